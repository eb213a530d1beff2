"""The small ones of the one-story issue: each with its test."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from dbc_accept.messages import CATALOGUE, lang_from_locale, set_lang, t
from selftests.snapshot_harness import REPO, TESTS_HOST, copy_snapshot
from selftests.test_terminal import _no_libvirt


def _pytest(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_metavars_are_words_and_profile_lists_its_choices() -> None:
    out = _pytest("--help").stdout
    assert "=DBC_" not in out, [ln for ln in out.splitlines() if "=DBC_" in ln]
    assert "--profile={dbc,runpod,vastai}" in out and "--lang={en,zh}" in out


def test_snapshot_given_as_a_file_says_so(tmp_path: Path) -> None:
    snap = copy_snapshot("amd-2004-1gpu", tmp_path)
    out = _pytest("-m", "host", f"--snapshot={snap.root / 'snapshot.json'}", "--no-report")
    assert out.returncode == 4
    assert "is a file: give the snapshot's folder" in out.stderr, out.stderr


def test_usage_errors_leave_no_folder(tmp_path: Path) -> None:
    for bad in ("--listen-broadcast=0", "--dbc-client=ftp://x"):
        out = _pytest("-m", "host", bad, "--report-dir", str(tmp_path / "r"), str(TESTS_HOST))
        assert out.returncode == 4, out.stderr
    assert not list((tmp_path / "r").glob("*")), list((tmp_path / "r").glob("*"))


def test_listen_argument_names_the_nodes_own_os(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.replace("/etc/default/libvirtd", 'LIBVIRT_ARGS="-l"', 'LIBVIRT_ARGS=""')
    snap.write("/etc/os-release", 'ID=debian\nVERSION_ID="12"\n'
               'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    message = snap.run("test_libvirtd.py")["test_libvirtd.py::test_libvirtd_listen_arg"][1]
    assert '(Debian GNU/Linux 12 (bookworm))' in message and "Ubuntu 12" not in message


def test_chinese_from_one_catalogue_with_the_same_ids(tmp_path: Path) -> None:
    assert all(set(v) == {"en", "zh"} for v in CATALOGUE.values())
    assert lang_from_locale({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert lang_from_locale({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}) == "en"
    try:
        set_lang("zh")
        assert t("NOT READY") == "未就绪 (NOT READY)"
    finally:
        set_lang("en")
    snap = _no_libvirt(copy_snapshot("intel-2204-4gpu", tmp_path))
    runs = {}
    for lang in ("en", "zh"):
        out = _pytest("-m", "host", f"--snapshot={snap.root}", f"--lang={lang}",
                      "--report-dir", str(tmp_path / lang), str(TESTS_HOST))
        runs[lang] = out.stdout.splitlines()
    assert runs["zh"][-1].endswith("未就绪 (NOT READY)") and "失败" in runs["zh"][-1]
    assert any("需要修复的问题" in ln for ln in runs["zh"])
    assert runs["en"][-1].endswith(": NOT READY")
    docs = [sorted((t["id"], t["outcome"], [f["check"] for f in t["findings"]])
                   for t in json.loads(p.read_text())["tests"])
            for p in (next((tmp_path / lang).glob("*/results.json")) for lang in ("en", "zh"))]
    assert docs[0] == docs[1]
    zh_html = next((tmp_path / "zh").glob("*/report.html")).read_text(encoding="utf-8")
    assert "需要修复的问题（根本原因在前）" in zh_html and "结论" in zh_html


def test_snapshot_bad_hosts_is_a_usage_error_without_a_folder(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dbc_accept.cli", "snapshot", "--hosts=::bad::",
                          str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--hosts ::bad::" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "s").exists()


def test_the_printed_replay_line_works_as_written(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dbc_accept.cli", "snapshot",
                          str(tmp_path / "snap")], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("replay: ")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    replay = subprocess.run(["bash", "-c", line[len("replay: "):] + " --no-report"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode in (0, 1), replay.stdout[-2000:] + replay.stderr[-2000:]
    assert re.search(r"dbc-accept: \d+ PASS, \d+ FAIL", replay.stdout.splitlines()[-1])


def test_cleanup_with_a_missing_image_is_a_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "dbc_accept.cli", "cleanup", "--vm-image",
                          "/nonexistent"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--vm-image /nonexistent: no such file" in out.stderr
    assert not out.stdout  # nothing was swept
