"""The run's report: pytest-html extras and the result folder."""
