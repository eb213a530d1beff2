"""The session-scoped ``guest`` fixture (vm, ssh:// or local)."""
