"""Redaction: the one scrub every report writer passes its text through.

Two layers: known secret values (the guest password, private keys of node.dat files the run
can see, values registered with :func:`add_secret`) are replaced wherever they appear, raw
or escaped for JSON, HTML or XML; and patterns (PEM private key blocks, ``password=``,
``node_private_key: ...`` and the like) are replaced whatever their value.
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

MARK = "[redacted]"
MIN_SECRET = 4  # shorter values would erase ordinary text and protect nothing
SECRET_KEYS = ("node_private_key", "priv_key", "private_key", "password", "passwd", "secret")
_QUOTE = r"(?:\\?(?:\"|&quot;|&#34;|&#x27;|&#39;|'))?"
_KEYS = "|".join(SECRET_KEYS)
_KEYVAL = re.compile(
    rf"(?i)\b((?:[a-z_]*_)?(?:{_KEYS}))\b({_QUOTE}\s*[=:]\s*{_QUOTE})([^\s\"'<>&\\,;]+)")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
                  re.S)
_DATA_URI = re.compile(r"data:(text/[a-z]+|application/json)(;charset=utf-8)?;base64,"
                       r"([A-Za-z0-9+/=]+)")
# Never taken for a secret's value: words the patterns meet in help texts and messages.
_HARMLESS = {"none", "null", "true", "false", "never", "given", "set", MARK.lower()}


class Redactor:
    """Knows the run's secrets; :meth:`scrub` removes them from any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(secret.strip()) >= MIN_SECRET:
            self._secrets.add(secret.strip())

    def _variants(self) -> list[str]:
        out: set[str] = set()
        for s in self._secrets:
            for v in (s, json.dumps(s)[1:-1]):
                out.update((v, html.escape(v), html.escape(v, quote=False)))
        return sorted(out, key=len, reverse=True)  # the longest first: no half-replaced value

    def scrub(self, text: str) -> str:
        """``text`` without any secret this run knows of, nor any key=value secret."""
        text = _PEM.sub("[redacted private key]", text)
        for v in self._variants():
            text = text.replace(v, MARK)
        return _KEYVAL.sub(_keyval, text)

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


def _keyval(m: re.Match[str]) -> str:
    if m.group(3).lower() in _HARMLESS:
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{MARK}"


def node_dat_secrets(text: str) -> list[str]:
    """The private values of a node.dat (``key=value`` lines)."""
    found = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        if sep and any(k in key.strip().lower() for k in ("priv", "secret", "password")):
            found.append(value.strip())
    return found


def _node_dat_files(config: pytest.Config) -> list[Path]:
    files: list[Path] = []
    dbc_dir = config.getoption("dbc_dir")
    if dbc_dir:
        files.append(Path(dbc_dir) / "dat" / "node.dat")
    snapshot = config.getoption("dbc_snapshot")
    if snapshot and Path(snapshot, "fs").is_dir():
        files.extend(p for p in Path(snapshot, "fs").rglob("node.dat") if p.is_file())
    return files


def run_redactor(config: pytest.Config) -> Redactor:
    """A Redactor for this run: the guest password and key, node.dat private keys."""
    r = Redactor()
    r.add(config.getoption("dbc_vm_password"))
    r.add(os.environ.get("DBC_VM_PASSWORD"))
    key = config.getoption("dbc_vm_key")
    if key:  # an unreadable key file is the guest fixture's error to report
        with contextlib.suppress(OSError):
            r.add(Path(key).read_text(encoding="utf-8", errors="replace"))
    for path in _node_dat_files(config):
        try:
            for secret in node_dat_secrets(path.read_text(encoding="utf-8", errors="replace")):
                r.add(secret)
        except OSError:
            continue
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
