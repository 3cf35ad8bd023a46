"""The watcher worker (see README.md, section "watcher")."""
