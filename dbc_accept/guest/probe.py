"""Ship a probe script to a guest, run it with the guest's python, and parse its JSON.

Probes live in :mod:`dbc_accept.probes` (one file each, plus their shared ``dbcprobe.py``)
and print one JSON document. Use::

    from dbc_accept.guest.probe import run_probe
    doc = run_probe(guest, "torch_info")                  # ships, runs, parses; no cache
    probes = ProbeRunner(guest); probes.get("matmul")     # ships once, caches per arguments

A probe that cannot run (no python, time-out, garbage output) or that answers
``{"error": why}`` (no torch, no CUDA) raises :class:`ProbeError`, a
:class:`~dbc_accept.verdict.FactError`: the test that asked fails with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dbc_accept.messages import fill
from dbc_accept.target import NOT_FOUND_RC, TIMEOUT_RC, Target
from dbc_accept.verdict import FactError

PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"
COMMON = "dbcprobe"  # the helper module every probe imports
DEFAULT_TIMEOUT = 120.0


class ProbeError(FactError):
    """A probe could not run in the guest, or said why it could not do its work."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(fill(f"probe {name} on {{guest}}", "en"), why, verb="run")
        self.probe = name


def probe_names() -> list[str]:
    """The probes this package ships (file stems)."""
    return sorted(p.stem for p in PROBES_DIR.glob("*.py")
                  if p.stem != COMMON and not p.stem.startswith("_"))


def parse_output(name: str, stdout: str) -> dict[str, Any]:
    """The probe's JSON document: the whole stdout, else its last line that parses."""
    candidates = [stdout] + [ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")]
    for text in candidates:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    tail = stdout.strip()[-300:] or "nothing"
    raise ProbeError(name, f"printed no JSON document (stdout: {tail})")


def _why_failed(rc: int, stdout: str, stderr: str, timeout: float) -> str:
    if rc == NOT_FOUND_RC:
        return fill("python3 not found on {guest}", "en")
    if rc == TIMEOUT_RC:
        return f"timed out after {timeout:g} s"
    lines = (stderr or stdout).strip().splitlines()
    return f"exited {rc}: {lines[-1] if lines else 'no output'}"


class ProbeRunner:
    """Runs probes in one guest: ships each file once, caches results per arguments."""

    def __init__(self, guest: Target, python: str = "python3") -> None:
        self.guest = guest
        self.python = python
        self._shipped: set[str] = set()
        self._cache: dict[tuple[str, tuple[str, ...]], dict[str, Any] | ProbeError] = {}

    @property
    def remote_dir(self) -> str:
        from dbc_accept.guest import guest_workdir

        return f"{guest_workdir(self.guest)}/probes"

    def _ship(self, stem: str) -> str:
        try:
            remote = f"{self.remote_dir}/{stem}.py"
        except OSError as exc:
            raise ProbeError(stem, str(exc)) from None
        if stem in self._shipped:
            return remote
        local = PROBES_DIR / f"{stem}.py"
        if not local.is_file():
            raise ProbeError(stem, f"no such probe (known: {', '.join(probe_names())})")
        if not self._shipped:
            res = self.guest.run(["mkdir", "-p", self.remote_dir])
            if not res.ok:
                raise ProbeError(stem, f"cannot make {self.remote_dir}: {res.describe()}")
        put = getattr(self.guest, "put", None)
        if put is None:
            raise ProbeError(stem, f"{type(self.guest).__name__} cannot receive files")
        try:
            put(str(local), remote)
        except OSError as exc:
            raise ProbeError(stem, f"cannot copy it to {remote}: {exc}") from None
        self._shipped.add(stem)
        return remote

    def run(self, name: str, args: Sequence[str] = (),
            timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Ship (once) and run probe ``name``; its JSON document, or ProbeError."""
        self._ship(COMMON)
        remote = self._ship(name)
        res = self.guest.run([self.python, remote, *args], timeout=timeout)
        if res.rc != 0:
            raise ProbeError(name, _why_failed(res.rc, res.stdout, res.stderr, timeout))
        doc = parse_output(name, res.stdout)
        if "error" in doc:
            raise ProbeError(name, str(doc["error"]))
        return doc

    def get(self, name: str, args: Sequence[str] = (),
            timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Like :meth:`run`, once per (name, args); the result or error is replayed."""
        key = (name, tuple(args))
        if key not in self._cache:
            try:
                self._cache[key] = self.run(name, args, timeout)
            except ProbeError as exc:
                self._cache[key] = exc
        value = self._cache[key]
        if isinstance(value, ProbeError):
            raise value
        return value


def run_probe(guest: Target, name: str, args: Sequence[str] = (),
              timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Ship probe ``name`` to ``guest``, run it, return its JSON (ProbeError if it cannot)."""
    return ProbeRunner(guest).run(name, args, timeout)


def local_probe_path(name: str) -> str:
    """Path of a probe file in this package (for running it here, e.g. in selftests)."""
    return os.fspath(PROBES_DIR / f"{name}.py")
