"""Report hooks: pytest-html extras, the result folder, the terminal pointer to it."""
