"""The differ worker (see README.md, section "differ")."""
