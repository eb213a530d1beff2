"""Owner records: the proof that an overlay volume was made by a run of this tool.

A volume cannot carry metadata, and a renter (or anyone with libvirt access) can name a
volume like ours. So when a run creates its overlay it writes a record, readable by root
only, under :func:`state_dir` (``/var/lib/dbc-accept/owned``, or ``$DBC_ACCEPT_STATE_DIR``):
``<volume name>.json`` = ``{"run_id", "path", "backing", "created"}``. The cleanup removes a
volume only when its name is ``dbc-accept-<id made by new_run_id>.qcow2``, a record of
that name exists, the record's path is the volume's, and the volume's backing file is the
template the record names. Anything else is left alone and listed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from dbc_accept.vm.spec import run_id_origin

STATE_ENV = "DBC_ACCEPT_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/dbc-accept/owned"


def state_dir() -> str:
    return os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR


def _record_path(volume_name: str) -> str:
    return os.path.join(state_dir(), f"{os.path.basename(volume_name)}.json")


def write_record(volume_name: str, run_id: str, path: str, backing: str) -> str | None:
    """Record that this run made the volume; None when written, else why not."""
    try:
        os.makedirs(state_dir(), mode=0o700, exist_ok=True)
        fd = os.open(_record_path(volume_name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"run_id": run_id, "path": path, "backing": backing,
                       "created": time.time()}, fh)
    except OSError as exc:
        return f"cannot write the owner record of {path} in {state_dir()}: {exc.strerror}"
    return None


def forget(volume_name: str) -> None:
    """Drop the record of a volume that is gone."""
    with contextlib.suppress(OSError):
        os.unlink(_record_path(volume_name))


def not_ours(volume_name: str, run_id: str, path: str, backing: str) -> str | None:
    """None when the volume is proven ours; else why it is left alone."""
    if run_id_origin(run_id) is None:
        return "its name was not made by this tool (no run id of new_run_id)"
    if not backing:
        return "not an overlay (no backing store)"
    try:
        with open(_record_path(volume_name), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return f"no owner record of this tool in {state_dir()}"
    if not isinstance(record, dict) or record.get("run_id") != run_id:
        return "its owner record names another run"
    if os.path.normpath(str(record.get("path", ""))) != os.path.normpath(path):
        return "its owner record names another path"
    if os.path.normpath(str(record.get("backing", ""))) != os.path.normpath(backing):
        return f"its backing file {backing} is not the template its run used"
    return None
