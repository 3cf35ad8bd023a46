"""Callback delivery: the HTTP client, the network fence, signing, retries and dead letters.

The only part of the notifier that talks HTTP. The loop hands it a :class:`DeliveryJob` after
the notification is committed; it reports every attempt back as an ``AttemptReport``, and the
rules (not this package) decide what that report changes in the durable state.
"""
