"""Registers the dbc-accept pytest plugin for every run in this tree."""

pytest_plugins = ["dbc_accept.plugin"]
