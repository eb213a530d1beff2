"""Steps shared by several host tests that turn a missing prerequisite into that check's FAIL."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.dbcnode import gather_dbc_processes, install_folder
from dbc_accept.verdict import fail


def dbc_folder(node: HostFacts, *, dependent: bool = True) -> str:
    """The dbc install folder (from its process, or --dbc-dir).

    Without one, ``test_dbc_install_folder`` FAILS with the fix and the tests that only read
    files in the folder (``dependent``) skip saying so: one failure, not one per file.
    """
    folder = install_folder(node.get(gather_dbc_processes), node.options.dbc_dir)
    if folder is None:
        if dependent:
            pytest.skip(f"{node.name}: no dbc install folder to read "
                        "(test_dbc_install_folder fails with the fix)")
        fail("dbc.install_dir", observed="no running dbc compute node to find the folder from",
             expected="the dbc install folder (or --dbc-dir)")
    return folder
