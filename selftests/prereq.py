"""Prerequisites of the selftests: a skip on a developer's machine, a failure under CI.

`.ci/run` sets CI=1 and installs everything these tests need, so there a missing
prerequisite is a broken CI set-up, not a reason to skip.
"""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(reason: str, *, module: bool = False) -> NoReturn:
    """Skip (the module, when ``module``), or fail with the reason under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"selftest prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def _python38() -> Path:
    """Python 3.8, the probes' floor: $DBC_PY38, pyenv's, or python3.8 on the PATH."""
    given = os.environ.get("DBC_PY38")
    if given:
        return Path(given)
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8.*/bin/python3.8")))
    return Path(found[-1] if found else shutil.which("python3.8") or "/usr/bin/python3.8")


PY38 = _python38()
