"""The result folder: every file goes through :func:`write_text` (and so through the scrub)."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.report.redact import Redactor
from dbc_accept.settings import settings

ACCEPTANCE_DIRS = frozenset({"tests_host", "tests_vm", "benchmarks"})


def write_text(path: Path, text: str, r: Redactor, html: bool = False) -> None:
    """Write ``text`` scrubbed of every secret the run knows (the only text writer)."""
    path.write_text(r.scrub_html(text) if html else r.scrub(text), encoding="utf-8")


def write_json(path: Path, doc: Any, r: Redactor) -> None:
    write_text(path, json.dumps(doc, indent=1, default=str, sort_keys=True) + "\n", r)


def rescrub(path: Path, r: Redactor, html: bool = False) -> None:
    """Scrub a file another plugin wrote (pytest-html, junitxml) in place."""
    if path.is_file():
        write_text(path, path.read_text(encoding="utf-8", errors="replace"), r, html=html)


def acceptance_run(config: pytest.Config) -> bool:
    """True when the run's paths are acceptance tests (not the project's own selftests)."""
    for arg in config.args:
        path = Path(arg.split("::")[0])
        absolute = path if path.is_absolute() else config.invocation_params.dir / path
        try:
            parts = absolute.resolve().relative_to(config.rootpath.resolve()).parts
        except ValueError:
            parts = path.parts
        if ACCEPTANCE_DIRS & set(parts):
            return True
    return False


def node_label(config: pytest.Config) -> str:
    """The node's name for the folder: the snapshot, the first --hosts entry, or this host."""
    snapshot = settings(config).snapshot
    hosts = getattr(config.option, "hosts", None)
    if snapshot:
        label = "snapshot-" + Path(snapshot).resolve().name
    elif hosts:
        first = [h for h in str(hosts).split(",") if h.strip()]
        label = first[0].split("://")[-1].split("@")[-1] if first else "hosts"
        label += f"-and-{len(first) - 1}-more" if len(first) > 1 else ""
    else:
        label = socket.gethostname()
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "node"


def make_folder(config: pytest.Config) -> Path:
    """``<report dir>/<UTC time>-<node>/``, made now (a suffix when the name is taken)."""
    base = Path(settings(config).report_dir)
    if not base.is_absolute():
        base = config.invocation_params.dir / base
    stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{node_label(config)}"
    for n in range(1, 100):
        folder = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise pytest.UsageError(f"--report-dir {base}: cannot make {folder}: {exc}; "
                                    "give a writable folder or --no-report") from None
    raise pytest.UsageError(f"--report-dir {base}: too many runs named {stem}")


def attachment_name(name: str) -> str:
    """A file name for an attachment title."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] + ".txt"
