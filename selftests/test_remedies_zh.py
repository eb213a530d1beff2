"""The fixes in Chinese: one text per check id, the same commands, the same ids and results.

Also: the words for where the in-guest tests run (--guest vm, ssh://, local) in fixes and
skip reasons.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.fix import actions as a
from dbc_accept.fix.resolve import plan
from dbc_accept.messages import (
    GUEST_KINDS,
    GUEST_WORDS,
    current,
    guest_kind,
    set_guest_kind,
    set_lang,
)
from dbc_accept.remedies import REMEDIES, localized, remedy_for
from dbc_accept.remedies_zh import FIXES_ZH
from dbc_accept.verdict import Finding
from selftests.snapshot_harness import REPO, TESTS_HOST, copy_snapshot

BACKTICKED = re.compile(r"`[^`]*`")
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
CJK = re.compile(r"[\u4e00-\u9fff]")
IP_FORWARD_ZH = FIXES_ZH["net.ip_forward"]


@pytest.fixture
def lang_and_kind() -> Iterator[None]:
    """Tests that switch the language or the guest kind leave them as they were."""
    before = current(), guest_kind()
    yield
    set_lang(before[0])
    set_guest_kind(before[1])


def test_every_remedy_has_a_chinese_text_and_nothing_else_does() -> None:
    assert set(FIXES_ZH) == set(REMEDIES)
    for cid, text in FIXES_ZH.items():
        assert CJK.search(text), f"{cid}: no Chinese in {text!r}"


@pytest.mark.parametrize("kind", GUEST_KINDS)
def test_commands_paths_and_code_are_the_same_in_both_languages(kind: str) -> None:
    for cid, remedy in REMEDIES.items():
        assert sorted(PLACEHOLDER.findall(remedy.fix)) == sorted(
            PLACEHOLDER.findall(FIXES_ZH[cid])), cid
        en, zh = remedy_for(cid, "en"), remedy_for(cid, "zh")
        assert set(BACKTICKED.findall(en)) == set(BACKTICKED.findall(zh)), cid
        assert not PLACEHOLDER.search(en + zh), (cid, en, zh)


@pytest.mark.parametrize("check_id", sorted(c for c, r in REMEDIES.items() if r.actions))
def test_chinese_fix_names_what_the_script_changes(check_id: str) -> None:
    for action in REMEDIES[check_id].actions:
        if isinstance(action, a.Manual):
            continue
        for token in action.tokens():
            assert token in FIXES_ZH[check_id], f"{check_id}: {token!r} not in the Chinese fix"


def test_the_step_is_named_in_the_readers_language() -> None:
    assert remedy_for("net.ip_forward", "en").endswith("(install guide step 3 (三) 3)")
    assert remedy_for("net.ip_forward", "zh") == f"{IP_FORWARD_ZH}（安装指南 (三) 3）"
    assert "README" in remedy_for("no.such-check", "zh") and CJK.search(
        remedy_for("no.such-check", "zh"))


def test_findings_keep_english_and_are_shown_in_the_readers_language(lang_and_kind: None) -> None:
    en = remedy_for("net.ip_forward", "en")
    finding = Finding("net.ip_forward", "fail", "0", "1", en, "n1")
    set_lang("zh")
    assert localized("net.ip_forward", en) == remedy_for("net.ip_forward", "zh")
    assert localized("net.ip_forward", "a fix written for the case") == \
        "a fix written for the case"
    assert finding.render().splitlines() == [
        "失败 [net.ip_forward] 节点 n1", "  实际: 0", "  应为: 1",
        f"  修复: {IP_FORWARD_ZH}（安装指南 (三) 3）"]
    set_lang("en")
    assert localized("net.ip_forward", en) == en
    assert finding.render().splitlines()[1:] == ["  observed: 0", "  expected: 1",
                                                 f"  fix:      {en}"]


def test_fix_script_notes_stay_english_under_chinese(lang_and_kind: None, tmp_path: Path) -> None:
    from dbc_accept.facts import HostFacts
    from dbc_accept.snapshot import SnapshotTarget

    node = HostFacts(SnapshotTarget(str(copy_snapshot("intel-2204-4gpu", tmp_path).root)))
    set_lang("zh")
    found = [Finding(c, "fail", "o", "e", remedy_for(c, "en")) for c in ("cpu.virt_flags",
                                                                         "storage.size")]
    notes = plan(found, node).notes
    assert [n.text for n in notes] == [remedy_for(c, "en") for c in ("cpu.virt_flags",
                                                                    "storage.size")]


# --- whole runs ---------------------------------------------------------------------------

def _run(snap: Path, report: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "host", "-p", "no:cacheprovider",
         f"--snapshot={snap}", "--report-dir", str(report), *args, str(TESTS_HOST)],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env)


def _results(report: Path) -> list[dict[str, Any]]:
    doc = json.loads(next(report.glob("*/results.json")).read_text(encoding="utf-8"))
    keep = ("id", "node", "outcome", "observed", "expected", "fix", "findings")
    return sorted(({k: t[k] for k in keep} for t in doc["tests"]), key=lambda t: t["id"])


def _locale(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES", "LANG")}
    return {**env, **values}


def test_a_fault_in_chinese_same_ids_same_results_json(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.write("/proc/sys/net/ipv4/ip_forward", "0\n")
    runs = {lang: _run(snap.root, tmp_path / lang, f"--lang={lang}", env=_locale(LANG="C"))
            for lang in ("en", "zh")}
    zh = runs["zh"].stdout
    assert f"修复: {IP_FORWARD_ZH}（安装指南 (三) 3）" in zh, zh[-3000:]
    assert "[net.ip_forward] 实际: net.ipv4.ip_forward = 0; 应为:" in zh and "fix:" not in zh
    assert remedy_for("net.ip_forward", "en") in runs["en"].stdout
    assert _results(tmp_path / "en") == _results(tmp_path / "zh")
    report = next((tmp_path / "zh").glob("*/report.html")).read_text(encoding="utf-8")
    blob = re.search(r'data-jsonblob="([^"]*)"', report)
    assert blob is not None
    tests = json.dumps(json.loads(unescape(blob.group(1)))["tests"], ensure_ascii=False)
    assert "<th>级别</th><th>检查项</th><th>实际</th><th>应为</th><th>修复</th>" in tests
    assert IP_FORWARD_ZH.replace("'", "&#x27;").replace(">", "&gt;").replace(
        "&&", "&amp;&amp;") in report


def test_the_language_comes_from_the_locale_unless_lang_is_given(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.write("/proc/sys/net/ipv4/ip_forward", "0\n")
    by_locale = _run(snap.root, tmp_path / "a", env=_locale(LANG="zh_CN.UTF-8")).stdout
    assert by_locale.splitlines()[-1].endswith("未就绪 (NOT READY)"), by_locale[-1000:]
    assert IP_FORWARD_ZH in by_locale
    chosen = _run(snap.root, tmp_path / "b", "--lang=en", env=_locale(LANG="zh_CN.UTF-8"))
    assert chosen.stdout.splitlines()[-1].endswith(": NOT READY")
    assert IP_FORWARD_ZH not in chosen.stdout


# --- where the in-guest tests run ---------------------------------------------------------

@pytest.mark.parametrize(("kind", "words", "not_said"), [
    ("local", "this machine", ("the VM", "test VM", "the guest")),
    ("ssh", "the guest", ("the VM", "test VM", "this machine")),
    ("vm", "the test VM", ("this machine",)),
])
def test_guest_fixes_name_where_the_tests_run(lang_and_kind: None, kind: str, words: str,
                                              not_said: tuple[str, ...]) -> None:
    set_guest_kind(kind)
    guest_ids = [c for c in REMEDIES if c.split(".")[0] in ("guest", "bench")]
    named = [c for c in guest_ids if words in remedy_for(c, "en")]
    assert {"guest.cpu", "guest.memory", "guest.disk", "guest.gpu_count"} <= set(named)
    for cid in guest_ids:
        text = remedy_for(cid, "en")
        assert not [w for w in not_said if w in text], (cid, text)
    assert GUEST_WORDS["{guest}"][kind][1] in remedy_for("guest.cpu", "zh")


def test_guest_local_skips_and_fixes_say_this_machine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="""
        import pytest
        from dbc_accept.messages import fill
        from dbc_accept.verdict import fail

        def test_skip():
            pytest.skip(fill("nvidia-xconfig is not installed on {guest}", "en"))

        def test_fail():
            fail("guest.memory", observed="8 GiB", expected="16 GiB")
        """)
    for guest, words in (("local", "this machine"), ("vm", "the test VM"),
                         ("ssh://u@h:22", "the guest")):
        result = pytester.runpytest_inprocess("--no-report", f"--guest={guest}", "-rs",
                                              "--lang=en", "-p", "no:cacheprovider")
        out = result.stdout.str()
        assert f"nvidia-xconfig is not installed on {words}" in out, out
        assert f"fix: {words} has too little RAM for its GPUs" in out, out
    assert guest_kind() == "vm"  # each run puts back what it found


def test_in_guest_suite_on_this_machine_says_this_machine(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`pytest tests_vm --guest local` where this machine shows no GPU: the skips say so."""
    monkeypatch.setattr("dbc_accept.guest.slots._sysfs_models", lambda: [])
    monkeypatch.setattr("dbc_accept.facts.pci.nvidia_gpus", lambda devices: [])
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    try:
        pytest.main([str(REPO / "tests_vm"), "--guest", "local", "--no-report", "-rs",
                     "--lang=en", "-p", "no:cacheprovider", "--rootdir", str(REPO), "-c",
                     str(REPO / "pyproject.toml")])
    finally:
        # pytest.main leaves tests_vm's modules imported under their bare names: a later
        # in-process run of a copy of tests_vm in this process would collide with them.
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(REPO / "tests_vm")):
                del sys.modules[name]
    out = capsys.readouterr().out
    skips = [ln for ln in out.splitlines() if ln.startswith("SKIPPED")]
    assert skips and all("(this machine shows no NVIDIA GPU; --expect-gpus not given)" in ln
                         for ln in skips), out[-3000:]
    told = out.split("what to fix", 1)[-1]
    assert not re.search(r"the VM|test VM|the guest|in-VM", told), told


def test_fleet_table_shows_the_chinese_fix_and_the_csv_keeps_english(lang_and_kind: None
                                                                       ) -> None:
    from dbc_accept.report.fleet_table import COLUMNS, fleet_csv, fleet_html

    en = remedy_for("net.ip_forward", "en")
    rows = [{**{c: "" for c in COLUMNS}, "node": "n1", "verdict": "FAIL", "first_fix": en},
            {**{c: "" for c in COLUMNS}, "node": "n2", "verdict": "FAIL",
             "first_fix": "could not read /proc/iomem"}]
    set_lang("zh")
    page = unescape(fleet_html(rows))
    assert "<h2>节点列表</h2>" in page and remedy_for("net.ip_forward", "zh") in page
    assert "could not read /proc/iomem" in page
    assert en in fleet_csv(rows) and IP_FORWARD_ZH not in fleet_csv(rows)
