"""The package's layers point down only: each rule below is checked on every import statement
of every module (top level and inside functions), read with ``ast``.

From the bottom: the base (target, verdict, secrecy, messages, remedies), facts/ (gatherers),
vm/ (the test VM over libvirt), guest/ and bench/ (in-guest runs), then the plugin layer
(pytest hooks, fixtures, the report). probes/ run alone in the guest and import nothing of
the package. Only the plugin layer imports pytest, so that `dbc-accept snapshot` runs
without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dbc_accept"  # a namespace package

# Modules (or packages: every module under them) that are pytest plugins, fixtures or hooks,
# or read pytest's config, stash and reports: they may import pytest. Add new ones here.
PLUGIN_LAYER = {
    "dbc_accept.plugin": "the pytest plugin itself",
    "dbc_accept.options": "declares the options on pytest's parser",
    "dbc_accept.settings": "the run's settings, built in pytest_configure",
    "dbc_accept.fleet": "sub-plugin: remote nodes read once per run, xdist's hooks",
    "dbc_accept.prereqs": "sub-plugin: the requires marker and its skips",
    "dbc_accept.rootdir": "sub-plugin: the suite's configuration when an option hid it",
    "dbc_accept.terminal": "sub-plugin: the terminal summary",
    "dbc_accept.guest.fixtures": "sub-plugin: the guest fixture",
    "dbc_accept.guest.slots": "reads the run's config and stash",
    "dbc_accept.guest.workers": "the guest under pytest-xdist workers",
    "dbc_accept.bench.session": "a benchmark fixture's session: skips what cannot run",
    "dbc_accept.report": "the report is made from pytest's reports, config and stash",
}


@dataclass(frozen=True)
class Rule:
    layer: str  # a module or package
    forbidden: tuple[str, ...]  # modules or packages it may not import
    why: str
    allowed: tuple[str, ...] = ()  # inside a forbidden package, what it may import


ABOVE_FACTS = ("dbc_accept.options", "dbc_accept.settings", "dbc_accept.plugin",
               "dbc_accept.fleet", "dbc_accept.snapshot", "dbc_accept.recording",
               "dbc_accept.nodecache", "dbc_accept.cli", "dbc_accept.guest", "dbc_accept.vm",
               "dbc_accept.report", "dbc_accept.bench", "dbc_accept.fix", "dbc_accept.story")
BASE = ("dbc_accept.target", "dbc_accept.verdict", "dbc_accept.secrecy", "dbc_accept.messages",
        "dbc_accept.guide", "dbc_accept.gpuids", "dbc_accept.noderead", "dbc_accept.remedies",
        "dbc_accept.remedies_zh", "dbc_accept.fix.actions")

RULES = [
    Rule("dbc_accept.facts", ("pytest", *ABOVE_FACTS),
         "facts are gathered from a Target for any caller: the checks, the snapshot command, "
         "the fix planner; they know no run, no option and no snapshot format"),
    Rule("dbc_accept.vm", ("pytest", "dbc_accept.guest", "dbc_accept.report",
                           "dbc_accept.bench", "dbc_accept.plugin", "dbc_accept.options",
                           "dbc_accept.settings", "dbc_accept.fleet", "dbc_accept.cli"),
         "the test VM is driven by the guest fixture and `dbc-accept cleanup`, never the "
         "other way round"),
    Rule("dbc_accept.cli", ("pytest", "dbc_accept.plugin", "dbc_accept.options",
                            "dbc_accept.settings", "dbc_accept.fleet"),
         "the command runs without pytest; what it shares with the plugin sits below both "
         "(dbc_accept.hosts)"),
    Rule("dbc_accept.hosts", ("pytest", "dbc_accept.plugin", "dbc_accept.cli"),
         "shared by the plugin and the command"),
    Rule("dbc_accept.nodecache", ("pytest", "dbc_accept.plugin", "dbc_accept.options",
                                  "dbc_accept.settings", "dbc_accept.report"),
         "the batched reads of `dbc-accept snapshot --hosts` run without pytest"),
    Rule("dbc_accept.recording", ("pytest", "dbc_accept.plugin", "dbc_accept.options",
                                  "dbc_accept.settings", "dbc_accept.report"),
         "`dbc-accept snapshot` runs without pytest"),
    Rule("dbc_accept.snapshot", ("pytest", "dbc_accept.facts", "dbc_accept.plugin",
                                 "dbc_accept.options", "dbc_accept.settings"),
         "the snapshot format is a Target: it knows files and commands, not the facts"),
    *(Rule(base, tuple(sorted({"pytest", "dbc_accept.facts", *ABOVE_FACTS} - {base})),
           "the base every layer uses: it imports only the base", allowed=BASE)
      for base in BASE),
]

# (importer, imported) pairs that break a rule above, each with the reason it stands.
EXCEPTIONS = {
    ("dbc_accept.fix.command", "pytest"):
        "`dbc-accept fix` runs `pytest -m host` in process; imported inside that function, "
        "so `dbc-accept snapshot` does not load it",
    ("dbc_accept.story", "dbc_accept.prereqs"):
        "the prerequisite table (ROOT_CHECKS) the story leads with; the story is told only "
        "by the terminal summary and the report, both in the plugin layer",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (``from a import b`` gives
    ``a.b`` where that is a module of the package, else ``a``)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            subs = {f"{base}.{a.name}" for a in node.names}
            modules = {s for s in subs if base.startswith("dbc_accept") and is_module(s)}
            found.update(modules)
            if len(modules) < len(subs):
                found.add(base)
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def in_plugin_layer(name: str) -> bool:
    return any(under(name, layer) for layer in PLUGIN_LAYER)


def broken(importer: str, names: set[str], forbidden: tuple[str, ...],
           allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(n for n in names
                  if any(under(n, f) for f in forbidden) and (importer, n) not in EXCEPTIONS
                  and not under(n, importer) and not any(under(n, a) for a in allowed))


@pytest.mark.parametrize("rule", RULES, ids=[r.layer for r in RULES])
def test_layer_imports_only_below_it(rule: Rule) -> None:
    members = [m for m in MODULES if under(m, rule.layer)]
    assert members, f"rule for {rule.layer}: no such module; remove the rule or fix its name"
    wrong = {m: bad for m in members if (bad := broken(m, imported(MODULES[m]), rule.forbidden,
                                                          rule.allowed))}
    assert not wrong, (f"{rule.layer} may not import {', '.join(rule.forbidden)} ({rule.why}); "
                       f"found {wrong}: move what is shared down a layer")


def test_only_the_plugin_layer_imports_pytest() -> None:
    wrong = {m: bad for m, path in MODULES.items()
             if not in_plugin_layer(m) and not under(m, "dbc_accept.probes")
             and (bad := broken(m, imported(path), ("pytest", "_pytest", "xdist")))}
    assert not wrong, (f"outside the plugin layer these import pytest: {wrong}; move the "
                       "pytest part to a module of PLUGIN_LAYER, or add the module there with "
                       "the reason it is a plugin")


def test_below_the_plugin_layer_nothing_imports_it() -> None:
    layer = tuple(PLUGIN_LAYER)
    wrong = {m: bad for m, path in MODULES.items()
             if not in_plugin_layer(m) and (bad := broken(m, imported(path), layer))}
    assert not wrong, (f"these import the plugin layer from below it: {wrong}; move what "
                       "they use down, or name the pair in EXCEPTIONS with the reason")


def test_probes_import_nothing_of_the_package() -> None:
    probes = [m for m in MODULES if under(m, "dbc_accept.probes")]
    assert len(probes) > 5, f"found only {probes} under dbc_accept/probes"
    wrong = {m: sorted(n for n in imported(MODULES[m]) if under(n, "dbc_accept"))
             for m in probes}
    assert not any(wrong.values()), (
        f"probes import the package: {wrong}; a probe is copied alone into the guest and may "
        "import only the stdlib, torch, pynvml and its sibling dbcprobe")


def test_no_module_imports_another_modules_private_name() -> None:
    wrong = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dbc_accept"):
                wrong += [f"{m}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not wrong, f"private names imported across modules: {wrong}; make them public"


def test_exceptions_are_still_needed() -> None:
    stale = [pair for pair in EXCEPTIONS
             if pair[0] not in MODULES or pair[1] not in imported(MODULES[pair[0]])]
    assert not stale, f"EXCEPTIONS name imports that are gone: {stale}; remove them"


def test_the_snapshot_command_loads_no_pytest() -> None:
    # the snapshot command's own imports, local and with --hosts, as cmd_snapshot makes them
    code = ("import sys, dbc_accept.cli as cli; cli._parser();"
            "import dbc_accept.recording, dbc_accept.nodecache, dbc_accept.hosts,"
            " dbc_accept.facts.registry, dbc_accept.target;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('pytest', '_pytest', 'xdist')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120, cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", (
        f"`dbc-accept snapshot` loads {proc.stdout.strip()}, expected no pytest module; "
        "find the import with `python -X importtime -c 'import dbc_accept.cli'`")
