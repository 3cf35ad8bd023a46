"""The three deployable workers: watcher, differ, notifier."""
