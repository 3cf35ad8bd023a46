"""CPS delta notification (CONTRACT §7): dataspace subscriptions, anchor lanes, CPS events.

Its own package because it is a second product riding the notifier's loop: everything CPS
(xpaths, merge patches, the event formats, the per-anchor lanes, the every-replica directory)
is here, so a change to it cannot quietly touch callback delivery, and the reverse.
"""
