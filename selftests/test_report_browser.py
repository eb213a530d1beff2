"""report.html in a real browser (headless Chromium, Debian's `chromium` package).

For a failing host run and for a benchmark run: the verdict and the grouped fixes are on the
first screen, the plot is loaded and shown, and the page logs no console error. A copy of the
report with two probe scripts added is rendered with --dump-dom (pytest-html's empty
``<img src="">`` templates are not load errors); the screenshot of the real
report's first screen is kept in $DBC_SELFTEST_ARTIFACTS (default reports/selftest-artifacts).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from selftests.prereq import unavailable
from selftests.snapshot_harness import REPO, TESTS_HOST, copy_snapshot
from selftests.test_bench_plugin import fake_probe, setup
from selftests.test_terminal import _no_libvirt

WIDTH, HEIGHT = 1280, 1000  # the first screen
ARTIFACTS = Path(os.environ.get("DBC_SELFTEST_ARTIFACTS",
                                str(REPO / "reports" / "selftest-artifacts")))
HEAD = ("<script>window.__dbcErrors = [];"
        "(function () { var e = console.error.bind(console);"
        " console.error = function () { window.__dbcErrors.push("
        "Array.prototype.join.call(arguments, ' ')); e.apply(null, arguments); }; })();"
        "window.addEventListener('error', function (ev) {"
        " var t = ev.target; if (t && t.getAttribute && t.getAttribute('src') === '') return;"
        " window.__dbcErrors.push(ev.message ? String(ev.message) : 'failed to load ' +"
        " (t && t.outerHTML ? t.outerHTML.slice(0, 160) : String(t))); }, true);</script>")
TAIL = ("<script>window.addEventListener('load', function () { setTimeout(function () {"
        " function seen(id) { var el = document.getElementById(id); if (!el) return null;"
        "  var r = el.getBoundingClientRect(), s = getComputedStyle(el);"
        "  return {top: r.top + window.scrollY, width: r.width, height: r.height,"
        "   shown: s.display !== 'none' && s.visibility !== 'hidden',"
        "   loaded: el.tagName === 'IMG' ? (el.complete && el.naturalWidth > 0) : null,"
        "   text: el.innerText ? el.innerText.slice(0, 300) : ''}; }"
        " var pre = document.createElement('pre'); pre.id = 'dbc-probe';"
        " pre.textContent = JSON.stringify({verdict: seen('dbc-verdict'),"
        "  fixes: seen('dbc-fixes'), plot: seen('dbc-plot'), errors: window.__dbcErrors});"
        " document.body.appendChild(pre); }, 300); });</script>")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        unavailable("no chromium (apt-get install chromium)")
    return str(found)


def _browse(report: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--window-size={WIDTH},{HEIGHT}", *args, report.as_uri()],
        capture_output=True, text=True, timeout=120)


def look(report: Path, shot: str) -> dict[str, Any]:
    """What the browser shows of ``report``; its first screen saved as ``shot``."""
    html = report.read_text(encoding="utf-8")
    probe = report.with_name("probed.html")
    probe.write_text(html.replace("<head>", "<head>" + HEAD, 1).replace(
        "</body>", TAIL + "</body>", 1), encoding="utf-8")
    out = _browse(probe, "--virtual-time-budget=10000", "--dump-dom")
    found = re.search(r'<pre id="dbc-probe">(.*?)</pre>', out.stdout, re.S)
    assert found, f"no probe result: {out.stderr[-2000:]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _browse(report, f"--screenshot={ARTIFACTS / shot}")
    assert (ARTIFACTS / shot).read_bytes()[:4] == b"\x89PNG"
    return dict(json.loads(unescape(found.group(1))))


def _on_first_screen(box: dict[str, Any] | None) -> bool:
    return bool(box and box["shown"] and box["height"] > 0 and box["top"] < HEIGHT)


def test_failing_host_run_in_the_browser(tmp_path: Path) -> None:
    snap = _no_libvirt(copy_snapshot("intel-2204-4gpu", tmp_path))
    subprocess.run([sys.executable, "-m", "pytest", "-m", "host", "-q", "-p",
                    "no:cacheprovider", f"--snapshot={snap.root}", "--report-dir",
                    str(tmp_path / "out"), str(TESTS_HOST)],
                   cwd=REPO, capture_output=True, text=True, timeout=300)
    [report] = list((tmp_path / "out").glob("*/report.html"))
    seen = look(report, "report-host-first-screen.png")
    assert seen["errors"] == [], seen["errors"]
    assert _on_first_screen(seen["verdict"]) and "NOT READY" in seen["verdict"]["text"], seen
    assert _on_first_screen(seen["fixes"]), seen


def test_benchmark_run_in_the_browser(pytester: pytest.Pytester) -> None:
    pytest.importorskip("matplotlib")
    setup(pytester)
    pytester.runpytest_inprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "quick",
        "--fake-probe", str(fake_probe(pytester)), "--report-dir", "out")
    [report] = list((pytester.path / "out").glob("*/report.html"))
    seen = look(report, "report-benchmark-first-screen.png")
    assert seen["errors"] == [], seen["errors"]
    assert _on_first_screen(seen["verdict"]) and "NOT READY" in seen["verdict"]["text"], seen
    assert _on_first_screen(seen["fixes"]), seen
    plot = seen["plot"]
    assert plot and plot["shown"] and plot["loaded"] and plot["width"] > 300, seen
