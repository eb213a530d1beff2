"""Ship a probe script to a guest, run it with the guest's python, and parse its JSON.

Probes live in :mod:`dbc_accept.probes` (one file each, plus their shared ``dbcprobe.py``)
and print one JSON document. Use::

    from dbc_accept.guest.probe import run_probe
    doc = run_probe(guest, "torch_info")                  # ships, runs, parses; no cache
    with ProbeRunner(guest) as probes:                    # ships once, caches per arguments,
        probes.get("matmul")                              # runs probes in one worker process

A probe that cannot run (no python, time-out, garbage output) or that answers
``{"error": why}`` (no torch, no CUDA) raises :class:`ProbeError`, a
:class:`~dbc_accept.verdict.FactError`: the test that asked fails with the reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from dbc_accept.guest import Guest, guest_workdir
from dbc_accept.guest.probeworker import (
    ProbeWorker,
    WorkerGone,
    WorkerStartError,
    worker_wanted,
)
from dbc_accept.messages import fill
from dbc_accept.target import NOT_FOUND_RC, TIMEOUT_RC, CommandResult
from dbc_accept.verdict import FactError

PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"
COMMON = "dbcprobe"  # the helper module every probe imports
WORKER = "worker"  # the long-lived process that runs probes on request
SELF_CONTAINED = frozenset({"cnn_bench"})  # probes that do not import COMMON
DEFAULT_TIMEOUT = 120.0


class ProbeError(FactError):
    """A probe could not run in the guest, or said why it could not do its work."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(fill(f"probe {name} on {{guest}}", "en"), why, verb="run")
        self.probe = name


def probe_names() -> list[str]:
    """The probes this package ships (file stems)."""
    return sorted(p.stem for p in PROBES_DIR.glob("*.py")
                  if p.stem not in (COMMON, WORKER) and not p.stem.startswith("_"))


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


# The probes that never run in the worker, and why each needs a process of its own.
OWN_PROCESS: dict[str, str] = {
    "gpu_free": "it must see the GPUs before any process of this run holds a CUDA context "
                "(the worker would be one): the worker is stopped before it runs",
    "multi_gpu": "it spawns one process per GPU (torch.multiprocessing, NCCL)",
    "cnn_bench": "it streams a line per run as it goes and spawns DDP processes",
}
ALONE = frozenset({"gpu_free"})  # the worker is stopped before these run


class ProbeRunner:
    """Runs probes in one guest: ships each file once, caches results per arguments.

    Probes run in one long-lived worker process in the guest (``probes/worker.py``) unless
    they are in :data:`OWN_PROCESS`, ``worker`` is False, or ``DBC_PROBE_WORKER=0``; a worker
    that cannot start makes every probe run in a process of its own. Close the runner (or
    use it as a context manager) to stop the worker.
    """

    def __init__(self, guest: Guest, python: str = "python3",
                 worker: bool | None = None) -> None:
        self.guest = guest
        self.python = python
        self.use_worker = worker_wanted() if worker is None else worker
        self._shipped: set[str] = set()
        self._cache: dict[tuple[str, tuple[str, ...]], dict[str, Any] | ProbeError] = {}
        self._worker: ProbeWorker | None = None
        self.worker_starts = 0
        self.worker_refused = ""  # why the worker could not start (then probes run alone)

    @property
    def remote_dir(self) -> str:
        return f"{guest_workdir(self.guest)}/probes"

    def ship(self, stem: str, local: Path | None = None) -> str:
        """Copy probe ``stem`` (``local``, else this package's file) into the guest once;
        its path there."""
        try:
            remote = f"{self.remote_dir}/{stem}.py"
        except OSError as exc:
            raise ProbeError(stem, str(exc)) from None
        if stem in self._shipped:
            return remote
        local = local or PROBES_DIR / f"{stem}.py"
        if not local.is_file():
            raise ProbeError(stem, f"no such probe (known: {', '.join(probe_names())})")
        self._upload(stem, str(local), remote)
        self._shipped.add(stem)
        return remote

    def _upload(self, name: str, local: str, remote: str) -> None:
        if not self._shipped:
            res = self.guest.run(["mkdir", "-p", self.remote_dir])
            if not res.ok:
                raise ProbeError(name, f"cannot make {self.remote_dir}: {res.describe()}")
            self._shipped.add("")  # the folder
        try:
            self.guest.put(local, remote)
        except OSError as exc:
            raise ProbeError(name, f"cannot copy it to {remote}: {exc}") from None

    def put_text(self, name: str, filename: str, text: str) -> str:
        """Write ``text`` to ``filename`` beside the probes in the guest (probe ``name``'s
        input); its path there."""
        remote = f"{self.remote_dir}/{filename}"
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write(text)
        try:
            self._upload(name, fh.name, remote)
        finally:
            os.unlink(fh.name)
        return remote

    def run(self, name: str, args: Sequence[str] = (),
            timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Ship (once) and run probe ``name``; its JSON document, or ProbeError."""
        self.ship(COMMON)
        remote = self.ship(name)
        if self.use_worker and name not in OWN_PROCESS:
            worker = self._running_worker()
            if worker is not None:
                return self._ask(worker, name, args, timeout)
        if name in ALONE:
            self.close()
        res = self.guest.run([self.python, remote, *args], timeout=timeout)
        if res.rc != 0:
            raise ProbeError(name, _why_failed(res.rc, res.stdout, res.stderr, timeout))
        return _document(name, parse_output(name, res.stdout))

    def stream(self, name: str, args: Sequence[str], timeout: float,
               on_line: Callable[[str], None], local: Path | None = None) -> CommandResult:
        """Ship (once) and run probe ``name`` in a process of its own, handing each stdout
        line to ``on_line`` as it arrives; ``local`` is its file here (default: this
        package's). Probes in :data:`SELF_CONTAINED` go without the shared helper."""
        if name not in SELF_CONTAINED:
            self.ship(COMMON)
        remote = self.ship(name, local)
        return self.guest.stream([self.python, remote, *args], timeout, on_line)

    def _running_worker(self) -> ProbeWorker | None:
        if self._worker is not None and not self._worker.alive():
            self.close()  # it ended between two probes: this one gets a new worker
        if self._worker is None and not self.worker_refused:
            remote = self.ship(WORKER)
            try:
                self._worker = ProbeWorker.start(self.guest, [self.python, remote])
                self.worker_starts += 1
            except WorkerStartError as exc:
                self.worker_refused = str(exc)
        return self._worker

    def _ask(self, worker: ProbeWorker, name: str, args: Sequence[str],
             timeout: float) -> dict[str, Any]:
        try:
            answer = worker.ask(name, args, timeout)
        except WorkerGone as exc:
            self._worker = None  # the next probe starts a new one
            raise ProbeError(name, str(exc)) from None
        if "worker_unusable" in answer:  # its last answer: it ended after sending it
            self.close()
        if "error" in answer:
            raise ProbeError(name, f"the probe worker could not run it: {answer['error']}")
        doc = answer.get("doc")
        if not isinstance(doc, dict):
            raise ProbeError(name, f"the probe worker answered no document: {answer!r:.300}")
        return _document(name, doc)

    def close(self) -> None:
        """Stop the worker, if one runs (it is started again when a probe needs it)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def __enter__(self) -> ProbeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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


def _document(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    if "error" in doc:
        raise ProbeError(name, str(doc["error"]))
    return doc


def run_probe(guest: Guest, name: str, args: Sequence[str] = (),
              timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Ship probe ``name`` to ``guest``, run it, return its JSON (ProbeError if it cannot)."""
    with ProbeRunner(guest, worker=False) as runner:  # one probe: nothing to share
        return runner.run(name, args, timeout)


def local_probe_path(name: str) -> str:
    """Path of a probe file in this package (for running it here, e.g. in selftests)."""
    return os.fspath(PROBES_DIR / f"{name}.py")
