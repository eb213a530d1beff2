"""``--ansible-inventory`` for real: ansible-core's ``ansible-inventory`` against namespace nodes.

The inventory has groups (``gpu_a`` with two nodes, ``gpu_b`` with one, ``gpu`` above both),
a port and a private key per host, and both connections testinfra maps: ``paramiko_ssh``
(one connection per node) and ``ssh`` (OpenSSH, a process per command). It checks the forms
the README shows: the whole inventory, a group (``--hosts=ansible://gpu_a``), one host.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from selftests.fleet_nodes import Fleet, Node, fleet
from selftests.prereq import unavailable
from selftests.test_remote_target import _by_test, _host_run

pytest_plugins = ["pytester"]

MAX_ROUND_TRIPS = 5
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


@pytest.fixture(scope="module")
def inventory() -> Iterator[tuple[Fleet, list[Node], Path]]:
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if shutil.which("ansible-inventory", path=path) is None:
        unavailable("needs ansible-core (pip install -e '.[dev]')", module=True)
    os.environ["PATH"] = path  # testinfra runs `ansible-inventory` from the PATH
    with fleet() as made:
        nodes = made.namespaced(2, key="key-a") + made.namespaced(1, key="key-b")
        lines = ["[gpu_a]"]
        for i, node in enumerate(nodes):
            if i == 2:
                lines.append("[gpu_b]")
            connection = "ssh" if i == 2 else "paramiko_ssh"
            lines.append(
                f"node{i} ansible_host={node.host} ansible_port={node.port} ansible_user=root "
                f"ansible_ssh_private_key_file={node.key} ansible_connection={connection} "
                f"ansible_ssh_common_args='{SSH_ARGS}'")
        lines += ["[gpu:children]", "gpu_a", "gpu_b"]
        file = made.folder / "inventory.ini"
        file.write_text("\n".join(lines) + "\n")
        yield made, nodes, file


def _node_names(found: dict[str, str]) -> set[str]:
    """The nodes named in the test ids (testinfra names them ansible://<inventory name>)."""
    return {nodeid.partition("[")[2].rstrip("]").split("-")[0] for nodeid in found}


def _asked(nodes: list[Node], before: list[int]) -> list[int]:
    """Remote commands each node's sshd started since ``before``."""
    return [n.sessions() - b for n, b in zip(nodes, before)]


def test_whole_inventory(pytester: pytest.Pytester,
                         inventory: tuple[Fleet, list[Node], Path]) -> None:
    made, nodes, file = inventory
    before = [n.sessions() for n in nodes]
    _, found = _host_run(pytester, f"--ansible-inventory={file}",
                         f"--ssh-config={made.ssh_config}")
    trips = _asked(nodes, before)  # each host reached on its own port with its own key
    assert all(0 < t <= MAX_ROUND_TRIPS for t in trips), trips
    names = sorted(_node_names(found))
    assert names == ["ansible://node0", "ansible://node1", "ansible://node2"]
    per_node = [_by_test(found, name) for name in names]
    assert len(per_node[0]) > 60 and all(p == per_node[0] for p in per_node)


def test_one_group_of_the_inventory(pytester: pytest.Pytester,
                                    inventory: tuple[Fleet, list[Node], Path]) -> None:
    made, nodes, file = inventory
    before = [n.sessions() for n in nodes]
    _, found = _host_run(pytester, f"--ansible-inventory={file}", "--hosts=ansible://gpu_a",
                         f"--ssh-config={made.ssh_config}")
    assert _node_names(found) == {"ansible://node0", "ansible://node1"}
    trips = _asked(nodes, before)
    assert trips[0] > 0 and trips[1] > 0 and trips[2] == 0, trips


def test_one_host_of_the_inventory(pytester: pytest.Pytester,
                                   inventory: tuple[Fleet, list[Node], Path]) -> None:
    made, nodes, file = inventory
    before = [n.sessions() for n in nodes]
    _, found = _host_run(pytester, f"--ansible-inventory={file}", "--hosts=ansible://node2",
                         f"--ssh-config={made.ssh_config}")
    assert _node_names(found) == {"ansible://node2"}
    assert _asked(nodes, before)[:2] == [0, 0]


def test_a_bare_group_name_is_refused_with_the_right_form(
        pytester: pytest.Pytester, inventory: tuple[Fleet, list[Node], Path]) -> None:
    _, _, file = inventory
    result = pytester.runpytest_subprocess("-m", "host", "-p", "no:randomly", "--no-report",
                                           f"--ansible-inventory={file}", "--hosts=all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hosts=ansible://all*"])
