"""In-guest checks the end-to-end selftests run through the `guest` fixture (not collected).

Environment switches, set by selftests/test_vm_e2e.py for its fault runs:
E2E_HOLD=<file>: touch <file> once the guest is up, then keep running commands in the guest
until <file>.release exists (signals and libvirtd stops arrive meanwhile);
E2E_DESTROY=1: destroy the test VM through libvirt, then use the guest.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.vm


def test_guest_target_and_uploads(guest: Any, tmp_path: Path) -> None:
    res = guest.run(["sh", "-c", 'echo "$1"', "_", "a b;c"])
    assert (res.rc, res.stdout) == (0, "a b;c\n"), res.describe()
    assert guest.read_text("/etc/hostname").strip() == "dbc-guest"
    assert "hostname" in guest.list_dir("/etc")
    assert guest.read_link("/proc/self/exe") != ""
    src = tmp_path / "probe.py"
    src.write_text("import json, platform; print(json.dumps(platform.python_version()))\n")
    guest.put(str(src), f"{guest.workdir}/probe.py")
    out = guest.run(["python3", f"{guest.workdir}/probe.py"])
    assert out.ok and re.match(r'^"3\.\d+', out.stdout), out.describe()
    assert guest.testinfra_host.file(guest.workdir).is_directory
    assert guest.passed_gpus == []


@pytest.mark.skipif(not os.environ.get("E2E_HOLD"), reason="only in the signal/libvirtd runs")
def test_hold_in_guest(guest: Any) -> None:
    marker = Path(os.environ["E2E_HOLD"])
    marker.touch()
    release = Path(f"{marker}.release")
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        guest.run(["sleep", "1"])
    assert guest.run(["true"]).ok


@pytest.mark.skipif(not os.environ.get("E2E_DESTROY"), reason="only in the destroy run")
def test_guest_destroyed_under_us(guest: Any, request: pytest.FixtureRequest) -> None:
    import libvirt

    conn = libvirt.open(request.config.getoption("dbc_libvirt_uri"))
    mine = [d for d in conn.listAllDomains(0)
            if re.match(rf"^dbc-accept-.*-p{os.getpid()}-", d.name())]
    assert len(mine) == 1, [d.name() for d in mine]
    mine[0].destroy()
    conn.close()
    guest.run(["sleep", "5"])  # must raise a clear error, not hang
