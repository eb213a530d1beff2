"""pyproject.toml says what the code imports: every third-party import is a dependency or in
an extra, and what an extra brings is imported only where it is needed, so the package
imports and runs its host checks without it."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dbc_accept"
PROBES = PACKAGE / "probes"

# The distribution that brings an import name, where the two differ.
DISTRIBUTION = {
    "libvirt": "libvirt-python", "libvirt_qemu": "libvirt-python",
    "testinfra": "pytest-testinfra", "pytest_html": "pytest-html", "xdist": "pytest-xdist",
    "_pytest": "pytest",
}
# Imports that come with a dependency rather than being named by the project.
WITH = {"pytest_metadata": "pytest-html", "cryptography": "paramiko"}
# Extras whose modules are imported inside the function that needs them, never at import.
OPTIONAL_EXTRAS = ("libvirt", "gpu", "plot")
# Probe siblings imported by name in the guest (they sit beside each other there).
PROBE_SIBLINGS = {p.stem for p in PROBES.glob("*.py")}


def load() -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        data: dict[str, Any] = tomllib.load(fh)
    return data


def names(requirements: list[str]) -> set[str]:
    return {canonical(Requirement(r).name) for r in requirements}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party(path: Path, top_level_only: bool) -> set[str]:
    """Top-level names of the non-stdlib, non-package modules ``path`` imports."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    if not hasattr(sys, "stdlib_module_names"):
        pytest.skip("telling the stdlib apart needs Python 3.10+ (sys.stdlib_module_names)")
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {n for n in found - stdlib - PROBE_SIBLINGS if n != "dbc_accept"}


def dist(module: str) -> str:
    return canonical(WITH.get(module) or DISTRIBUTION.get(module, module))


def modules(probes: bool) -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if (PROBES in p.parents) == probes]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return load()


def test_extras_and_groups_parse(project: dict[str, Any]) -> None:
    extras = project["project"]["optional-dependencies"]
    assert set(extras) >= {"libvirt", "gpu", "plot", "dev"}, sorted(extras)
    for requirements in [*extras.values(), project["project"]["dependencies"]]:
        assert names(requirements)  # each parses as a PEP 508 requirement
    assert names(extras["gpu"]) == {"torch", "torchvision", "pynvml"}, extras["gpu"]
    assert names(extras["plot"]) == {"matplotlib"}, extras["plot"]
    assert names(extras["libvirt"]) == {"libvirt-python"}, extras["libvirt"]


def test_dev_group_and_dev_extra_name_the_same_tools(project: dict[str, Any]) -> None:
    group = names(project["dependency-groups"]["dev"])
    extra = names(project["project"]["optional-dependencies"]["dev"])
    assert {"ruff", "mypy", "hypothesis"} <= group, sorted(group)
    assert extra == group | {"dbc-accept"}, (
        f"the dev extra names {sorted(extra)}, the dev group {sorted(group)}: the extra is "
        "the group and the plot (dbc-accept[plot]); add the tool to both")


def test_every_third_party_import_is_declared(project: dict[str, Any]) -> None:
    declared = names(project["project"]["dependencies"])
    for extra in OPTIONAL_EXTRAS:
        declared |= names(project["project"]["optional-dependencies"][extra])
    imports = {m for p in modules(probes=False) for m in third_party(p, top_level_only=False)}
    missing = sorted(m for m in imports if dist(m) not in declared)
    assert not missing, f"imported but in no dependency or extra of pyproject.toml: {missing}"


def test_extras_are_imported_only_where_needed(project: dict[str, Any]) -> None:
    extras = project["project"]["optional-dependencies"]
    optional = set().union(*(names(extras[e]) for e in OPTIONAL_EXTRAS))
    assert not optional & names(project["project"]["dependencies"]), "an extra is required too"
    eager = {str(p.relative_to(ROOT)): sorted(bad) for p in modules(probes=False)
             if (bad := {m for m in third_party(p, top_level_only=True) if dist(m) in optional})}
    assert not eager, (f"modules import an optional extra at import time: {eager}; import it "
                       "inside the function that needs it and say how to install it")


def test_probes_import_only_the_gpu_extra(project: dict[str, Any]) -> None:
    gpu = names(project["project"]["optional-dependencies"]["gpu"])
    imports = {m for p in modules(probes=True) for m in third_party(p, top_level_only=False)}
    assert imports and {dist(m) for m in imports} <= gpu, (
        f"the probes import {sorted(imports)}; the gpu extra names {sorted(gpu)}")


def test_report_without_matplotlib_says_how_to_get_the_plot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dbc_accept.report.plugin import _png

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    state = SimpleNamespace(png=None, bench_rows=[{"id": "resnet50-train"}], min_ratio=0.85,
                            info={})
    assert _png(state) is None  # type: ignore[arg-type]
    assert state.info["plot"].startswith("no plot: "), state.info
    assert "pip install matplotlib" in state.info["plot"] and "[plot]" in state.info["plot"]
