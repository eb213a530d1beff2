"""Steps shared by several host tests that turn a missing prerequisite into that check's FAIL."""

from __future__ import annotations

from dbc_accept.facts import HostFacts
from dbc_accept.facts.dbcnode import gather_dbc_processes, install_folder
from dbc_accept.verdict import fail


def dbc_folder(node: HostFacts) -> str:
    """The dbc install folder (from its process, or --dbc-dir), or a dbc.install_dir FAIL."""
    folder = install_folder(node.get(gather_dbc_processes), node.options.get("dbc_dir"))
    if folder is None:
        fail("dbc.install_dir", observed="no running dbc compute node to find the folder from",
             expected="the dbc install folder (or --dbc-dir)")
    return folder
