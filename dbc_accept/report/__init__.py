"""The run's report: pytest-html extras, the result folder, the plot.

Fixtures add texts with :func:`attach` and secrets with :func:`add_secret`.
"""
from __future__ import annotations

from dbc_accept.report.attachments import attach
from dbc_accept.report.redact import add_secret

__all__ = ["add_secret", "attach"]
