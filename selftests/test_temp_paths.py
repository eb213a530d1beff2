"""Probes are copied and run as root: only into a fresh folder of mode 0700, never a fixed path."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from dbc_accept.guest import LocalGuest, guest_workdir
from dbc_accept.guest.probe import ProbeError, ProbeRunner
from dbc_accept.target import LocalTarget


def test_a_local_guest_gets_a_private_fresh_folder() -> None:
    a, b = LocalGuest(), LocalGuest()
    try:
        assert a.workdir != b.workdir and "/tmp/dbc-accept-guest" not in (a.workdir, b.workdir)
        for g in (a, b):
            st = os.lstat(g.workdir)
            assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
            assert st.st_uid == os.getuid()
    finally:
        shutil.rmtree(a.workdir)
        shutil.rmtree(b.workdir)


def test_no_fallback_to_a_shared_path() -> None:
    with pytest.raises(OSError, match="no private work folder"):
        guest_workdir(LocalTarget())
    with pytest.raises(ProbeError, match="no private work folder"):
        ProbeRunner(LocalTarget()).run("nvml")
