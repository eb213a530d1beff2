"""Registers the dbc-accept pytest plugin for every run in this tree."""
from __future__ import annotations

pytest_plugins = ["dbc_accept.plugin"]
