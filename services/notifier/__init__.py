"""The notifier worker (see README.md, section "notifier")."""
