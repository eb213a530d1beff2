"""The report and result folder through pytester: files, outcomes, fixes, no secrets, xdist."""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from pathlib import Path

import pytest

from dbc_accept.report.redact import Redactor, node_dat_secrets
from dbc_accept.snapshot import FORMAT

PASSWORD = "Pw-planted-7731"
NODE_KEY = "9f1c2d3e4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
PRIV_KEY = "planted-priv-key-0a0b0c"
NODE_DAT = f"node_id=2gfpp3MAB4Aa\nnode_private_key={NODE_KEY}\npriv_key={PRIV_KEY}\n"
SECRETS = (PASSWORD, NODE_KEY, PRIV_KEY)

CHECKS = '''
import pytest
from dbc_accept.report import attach
from dbc_accept.verdict import check, observe, warn

pytestmark = pytest.mark.host
DAT = "/opt/dbc/dat/node.dat"

def test_pass(node):
    observe(kernel="6.1.0")

def test_warns(node):
    warn("cpu.ignore_msrs", observed="not set", expected="kvm.ignore_msrs=1")

def test_fails_with_secrets(node, request):
    text = node.target.read_text(DAT)
    attach(request.node, "node.dat as read", text)
    observe(node_dat=text, password="PASSWORD")
    check(False, "net.ip_forward", observed="0 (" + text + ")", expected="1")

def test_skips(node, request):
    attach(request.config, "domain XML", "<domain><name>dbcacc-x</name></domain>")
    pytest.skip("no GPU in this run by choice")
'''.replace("PASSWORD", PASSWORD)


def make_snapshot(root: Path) -> Path:
    snap = root / "snap"
    (snap / "fs/opt/dbc/dat").mkdir(parents=True)
    (snap / "fs/opt/dbc/dat/node.dat").write_text(NODE_DAT)
    (snap / "snapshot.json").write_text(json.dumps({"format": FORMAT, "hostname": "n1"}))
    return snap


def setup(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\naddopts = --strict-markers -p dbc_accept.plugin\nmarkers =\n"
                     "    host: h\n")
    tests = pytester.mkdir("tests_host")
    (tests / "test_checks.py").write_text(CHECKS)
    return make_snapshot(pytester.path)


def only_folder(out: Path) -> Path:
    folders = list(out.iterdir())
    assert len(folders) == 1, folders
    assert re.fullmatch(r"\d{8}T\d{6}Z-snapshot-snap", folders[0].name)
    return folders[0]


def all_text(folder: Path) -> str:
    """Every file of the folder, with base64 data: attachments decoded."""
    texts = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            text = path.read_text(encoding="utf-8", errors="replace")
            texts.append(text)
            texts.extend(base64.b64decode(m).decode("utf-8", "replace") for m in
                         re.findall(r"data:[a-z/]+(?:;charset=utf-8)?;base64,([A-Za-z0-9+/=]+)",
                                    text))
    return "\n".join(texts)


def test_report_folder_and_contents(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    result = pytester.runpytest_inprocess("tests_host", "--snapshot", str(snap),
                                          "--vm-password", PASSWORD, "--report-dir", "out")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    folder = only_folder(pytester.path / "out")
    for name in ("report.html", "junit.xml", "results.json", "system_info.json"):
        assert (folder / name).is_file(), name
    doc = json.loads((folder / "results.json").read_text())
    outcomes = {t["id"].split("::")[-1]: t for t in doc["tests"]}
    assert {k: v["outcome"] for k, v in outcomes.items()} == {
        "test_pass[snapshot:n1]": "passed", "test_warns[snapshot:n1]": "warned",
        "test_fails_with_secrets[snapshot:n1]": "failed", "test_skips[snapshot:n1]": "skipped"}
    by_name = {k.split("[")[0]: v for k, v in outcomes.items()}
    warned, failed = by_name["test_warns"], by_name["test_fails_with_secrets"]
    assert warned["outcome"] == "warned" and "kvm.ignore_msrs" in warned["fix"]
    assert failed["outcome"] == "failed" and failed["expected"] == "1"
    assert "ip_forward" in failed["fix"] and failed["duration"] >= 0
    assert by_name["test_skips"]["message"] == "no GPU in this run by choice"
    assert by_name["test_pass"]["values"] == {"kernel": "6.1.0"}
    html = (folder / "report.html").read_text()
    assert "Passed (WARN)" in html
    assert "kvm.ignore_msrs=1" in html and failed["fix"].split("`")[0] in html
    assert "Result folder" in html and "dbc-findings" in html and "node.dat as read" in html
    assert json.loads((folder / "system_info.json").read_text())["node"] == "snapshot-snap"
    blob = re.search(r'data-jsonblob="([^"]*)"', html)
    assert blob is not None
    env = json.loads(unescape(blob.group(1)))["environment"]
    # the node, not the machine that ran pytest: its Python and plugins are folded below
    assert env["Node"] == "snapshot-snap" and "dbc-accept" in env
    assert not {"GPUs", "Python", "Plugins", "Packages"} & set(env), env
    assert "The machine that ran the tests (Python, plugins)</summary>" in html
    title = re.search(r"<title[^>]*>(.*?)</title>", html)
    assert title and title.group(1) == "DBC node acceptance: snapshot-snap: NOT READY", title
    front = html[html.index("dbc-verdict"):html.index("The host as tested")]
    assert "Verdict: NOT READY" in front and "1 PASS, 1 FAIL, 1 WARN, 1 SKIP" in front
    fixes = front[front.index("What to fix, root causes first"):]
    assert fixes.index("ip_forward") < fixes.index("kvm.ignore_msrs")  # FAIL before WARN
    assert "install guide step 3 (三)" in fixes
    # each failure once: its findings table, not its message again in the log below it
    assert html.count("0 (node_id=") <= 3, html.count("0 (node_id=")
    result.stdout.fnmatch_lines(["*dbc-accept report*", f"report:  {folder}/report.html"])


def test_no_secret_in_any_file(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    pytester.runpytest_inprocess("tests_host", "--snapshot", str(snap), "--vm-password",
                                 PASSWORD, "--report-dir", "out", "--junitxml", "mine.xml")
    text = all_text(only_folder(pytester.path / "out"))
    assert "[redacted]" in text and "node_id=2gfpp3MAB4Aa" in text
    for secret in SECRETS:
        assert secret not in text
    assert PASSWORD not in (pytester.path / "mine.xml").read_text()


def test_no_report(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    result = pytester.runpytest_inprocess("tests_host", "--snapshot", str(snap),
                                          "--report-dir", "out", "--no-report")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    assert not (pytester.path / "out").exists()


def test_selftests_write_no_report(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = -p dbc_accept.plugin\n")
    pytester.mkdir("selftests")
    (pytester.path / "selftests" / "test_x.py").write_text("def test_x():\n    pass\n")
    pytester.runpytest_inprocess("selftests", "--report-dir", "out").assert_outcomes(passed=1)
    assert not (pytester.path / "out").exists()


def test_xdist_gives_one_report(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    result = pytester.runpytest_subprocess("tests_host", "-n", "2", "--snapshot", str(snap),
                                           "--vm-password", PASSWORD, "--report-dir", "out")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    folder = only_folder(pytester.path / "out")
    doc = json.loads((folder / "results.json").read_text())
    assert sorted(t["outcome"] for t in doc["tests"]) == ["failed", "passed", "skipped",
                                                          "warned"]
    assert PASSWORD not in all_text(folder) and NODE_KEY not in all_text(folder)


def test_redactor_patterns() -> None:
    r = Redactor(["hunter22"])
    text = ('x hunter22 {"node_private_key": "abc123"} priv_key=zz password: never '
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----")
    out = r.scrub(text)
    assert "hunter22" not in out and "abc123" not in out and "zz" not in out
    assert "AAAA" not in out and "password: never" in out
    assert "hunter22" not in r.scrub(json.dumps(json.dumps(text)))
    assert node_dat_secrets(NODE_DAT) == [NODE_KEY, PRIV_KEY]


def test_user_html_path_and_run_attachments(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    result = pytester.runpytest_inprocess("tests_host", "--snapshot", str(snap), "--vm-password",
                                          PASSWORD, "--report-dir", "out", "--html", "mine.html")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    folder = only_folder(pytester.path / "out")
    mine = (pytester.path / "mine.html").read_text()
    assert (folder / "report.html").read_text() == mine
    assert "&lt;domain&gt;&lt;name&gt;dbcacc-x" in mine and PASSWORD not in mine
    assert (folder / "attachments" / "domain_XML.txt").read_text().startswith("<domain>")
    attached = [p.name for p in (folder / "attachments").iterdir()]
    assert any(name.endswith("node.dat_as_read.txt") for name in attached)


def test_without_pytest_html_the_folder_is_still_written(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    result = pytester.runpytest_inprocess("tests_host", "--snapshot", str(snap), "-p", "no:html",
                                          "--report-dir", "out")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    folder = only_folder(pytester.path / "out")
    assert {p.name for p in folder.iterdir()} >= {"junit.xml", "results.json",
                                                   "system_info.json"}
    result.stdout.fnmatch_lines(["report:  no report.html (pytest-html is not active*"])
