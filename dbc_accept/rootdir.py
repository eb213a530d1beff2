"""Take the suite's own configuration when an option's value was mistaken for a test path.

pytest finds its rootdir and configuration file before it loads plugins, so in
``pytest -m host --snapshot /srv/snap`` it takes ``/srv/snap`` for a test path, roots the run
there, and reads no ``pyproject.toml``: no test paths, no markers, no addopts. Once the
plugin is loaded the options are known; if pytest then found no configuration file although
the working directory is inside this suite's checkout, the same command is run again with
that checkout's configuration named (``-c``), which is what pytest would have found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Generator

import pytest

_ENV = "DBC_ACCEPT_CONFIG_RETRY"  # set on the second run: never more than one


def suite_config(start: Path) -> Path | None:
    """The ``pyproject.toml`` of a dbc-accept checkout at or above ``start``, if any."""
    for base in (start, *start.parents):
        candidate = base / "pyproject.toml"
        try:
            text = candidate.read_text(encoding="utf-8")
        except OSError:
            continue
        if 'name = "dbc-accept"' in text and "[tool.pytest.ini_options]" in text:
            return candidate
    return None


# A wrapper that goes first: before pytest's capture plugin takes over stdout and stderr.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, None, None]:
    _retry_with_suite_config(early_config)
    yield


def _retry_with_suite_config(early_config: pytest.Config) -> None:
    params = early_config.invocation_params
    if early_config.inipath is not None or os.environ.get(_ENV):
        return
    if tuple(params.args) != tuple(sys.argv[1:]):  # run in-process (pytester): leave it be
        return
    config = suite_config(Path(params.dir))
    if config is None:
        return
    os.environ[_ENV] = "1"
    argv = [sys.executable, "-m", "pytest", "-c", str(config), "--rootdir", str(config.parent),
            *params.args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
