"""Redaction: the one scrub every report writer passes its text through.

Two layers: known secret values (the guest password, private keys of node.dat files the run
read by any route, values registered with :func:`add_secret` or
:func:`dbc_accept.secrecy.register`) are replaced wherever they appear, raw or escaped for
JSON, HTML or XML; and the patterns of :mod:`dbc_accept.secrecy` (PEM private key blocks,
secret-named values, URL passwords) are masked whatever their value.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from dbc_accept.secrecy import (
    MIN_SECRET,
    PEM,
    known_secrets,
    mask_keyvals,
    mask_url,
    node_dat_secrets,
    register_node_dat,
)
from dbc_accept.settings import settings

__all__ = ["MARK", "Redactor", "add_secret", "node_dat_secrets", "redactor", "run_redactor"]

MARK = "[redacted]"
_DATA_URI = re.compile(r"data:(text/[a-z]+|application/json)(;charset=utf-8)?;base64,"
                       r"([A-Za-z0-9+/=]+)")


class Redactor:
    """Knows the run's secrets; :meth:`scrub` removes them from any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(secret.strip()) >= MIN_SECRET:
            self._secrets.add(secret.strip())

    def secrets(self) -> list[str]:
        """Every value this run keeps out of its artifacts."""
        return sorted(self._secrets | set(known_secrets()))

    def _variants(self) -> list[str]:
        out: set[str] = set()
        for s in self._secrets | set(known_secrets()):
            for v in (s, json.dumps(s)[1:-1]):
                out.update((v, html.escape(v), html.escape(v, quote=False)))
        return sorted(out, key=len, reverse=True)  # the longest first: no half-replaced value

    def scrub(self, text: str) -> str:
        """``text`` without any secret this run knows of, nor any key=value secret."""
        text = PEM.sub("[redacted private key]", text)
        for v in self._variants():
            text = text.replace(v, MARK)
        return mask_url(mask_keyvals(text))

    def scrub_html(self, text: str) -> str:
        """Like :meth:`scrub`, also inside base64 ``data:`` text attachments."""
        return self.scrub(_DATA_URI.sub(lambda m: self._data_uri(m), text))

    def _data_uri(self, m: re.Match[str]) -> str:
        try:
            raw = base64.b64decode(m.group(3)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return m.group(0)
        clean = base64.b64encode(self.scrub(raw).encode()).decode()
        return f"data:{m.group(1)}{m.group(2) or ''};base64,{clean}"


def _node_dat_files(config: pytest.Config) -> list[Path]:
    """node.dat of --dbc-dir, else of the dbc program running here (not of a snapshot: its
    node.dat holds markers only, and its reads stay inside it)."""
    dbc_dir = settings(config).dbc_dir
    if dbc_dir:
        return [Path(dbc_dir) / "dat" / "node.dat"]
    if settings(config).snapshot or getattr(config.option, "hosts", None):
        return []
    from dbc_accept.facts.dbcnode import gather_dbc_processes, install_folder
    from dbc_accept.target import LocalTarget
    from dbc_accept.verdict import FactError

    try:
        folder = install_folder(gather_dbc_processes(LocalTarget()), None)
    except (FactError, OSError):
        return []
    return [Path(folder) / "dat" / "node.dat"] if folder else []


def run_redactor(config: pytest.Config) -> Redactor:
    """A Redactor for this run: the guest password and key, node.dat private keys."""
    r = Redactor()
    found = settings(config)
    r.add(found.vm_password)
    r.add(os.environ.get("DBC_VM_PASSWORD"))
    pw_file = found.vm_password_file
    if pw_file:
        with contextlib.suppress(OSError):
            r.add((Path(pw_file).read_text(encoding="utf-8", errors="replace").splitlines()
                   or [""])[0])
    key = found.vm_key
    if key:  # an unreadable key file is the guest fixture's error to report
        with contextlib.suppress(OSError):
            r.add(Path(key).read_text(encoding="utf-8", errors="replace"))
    for path in _node_dat_files(config):
        with contextlib.suppress(OSError):
            register_node_dat(path.read_text(encoding="utf-8", errors="replace"))
    return r


REDACTOR_KEY = pytest.StashKey[Redactor]()


def add_secret(config: pytest.Config, value: str) -> None:
    """Register a value no report file may contain (any fixture or plugin may call it)."""
    if REDACTOR_KEY not in config.stash:
        config.stash[REDACTOR_KEY] = run_redactor(config)
    config.stash[REDACTOR_KEY].add(value)


def redactor(config: pytest.Config) -> Redactor:
    """The run's Redactor (made on first use)."""
    if REDACTOR_KEY not in config.stash:
        config.stash[REDACTOR_KEY] = run_redactor(config)
    return config.stash[REDACTOR_KEY]
