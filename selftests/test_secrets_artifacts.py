"""Planted secrets, in every form the review found, reach no artifact: snapshot, terminal,
report.html, junit.xml, results.json."""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path

import pytest

from dbc_accept.cli import main
from dbc_accept.facts import registry
from dbc_accept.target import Target
from selftests.test_report import all_text, only_folder, setup

# (form, value): each value must be absent from every artifact
FORMS = [
    ("cifs pass=", "cifs-pass-51a"),
    ("api_key=", "apikey-under-52b"),
    ("apikey=", "apikey-joined-53c"),
    ("auth_key=", "authkey-54d"),
    ("credentials=", "creds-55e"),
    ('JSON "password"', "json-pw-56f"),
    ("-p X", "dash-p-57a"),
    ("--wallet-pass X", "wallet-pass-58b"),
    ("--key X", "dash-key-59c"),
]
VALUES = [v for _, v in FORMS]
JSON_FORM = FORMS[5][0]


def _planted_texts() -> dict[str, str]:
    v = dict(FORMS)
    return {
        "fstab": (f"/dev/sdb1 /data xfs defaults,prjquota 0 0\n//nas/share /mnt/nas cifs "
                  f"username=u,pass={v['cifs pass=']},uid=0 0 0\n"),
        "app.conf": (f"listen=1\napi_key={v['api_key=']}\napikey={v['apikey=']}\n"
                     f"auth_key = {v['auth_key=']}\ncredentials={v['credentials=']}\n"
                     f'{{"user": "a", "password": "{v[JSON_FORM]}"}}\n'),
        "cmdline": "\0".join(["/usr/bin/miner", "-p", v["-p X"], "--wallet-pass",
                              v["--wallet-pass X"], "--key", v["--key X"], "-v"]) + "\0",
    }


def test_each_secret_form_stays_out_of_a_snapshot(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    files = {}
    for name, text in _planted_texts().items():
        files[name] = tmp_path / name
        files[name].write_text(text)
    argv = ["echo", "-p", VALUES[6], "--key", VALUES[8], f"api_key={VALUES[1]}"]

    def gather_planted(target: Target) -> None:
        for path in files.values():
            target.read_text(str(path))
        target.run(argv)

    monkeypatch.setattr(registry, "MODULES", [*registry.MODULES,
                                              types.SimpleNamespace(GATHERERS=[gather_planted])])
    assert main(["snapshot", str(tmp_path / "snap")]) == 0
    leaks = []
    for path in (tmp_path / "snap").rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            leaks += [f"{path.name}: {form}" for form, v in FORMS if v.encode() in data]
            leaks += [f"{path.name}: unsalted sha256 of {form}" for form, v in FORMS
                      if hashlib.sha256(v.encode()).hexdigest().encode() in data]
    assert not leaks


def test_each_secret_form_stays_out_of_the_reports(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    texts = _planted_texts()
    lines = "\n".join([*texts["fstab"].splitlines(), *texts["app.conf"].splitlines(),
                       " ".join(texts["cmdline"].split("\0"))])
    (pytester.path / "tests_host" / "test_forms.py").write_text(
        "import pytest\nfrom dbc_accept.verdict import check\n"
        "pytestmark = pytest.mark.host\n"
        f"def test_forms(node):\n    check(False, 'x.y', observed={lines!r}, expected='z')\n")
    pytester.runpytest_inprocess("tests_host/test_forms.py", "--snapshot", str(snap),
                                 "--report-dir", "out")
    text = all_text(only_folder(pytester.path / "out"))
    assert [form for form, v in FORMS if v in text] == []


def test_arguments_are_masked_in_results_json(pytester: pytest.Pytester) -> None:
    snap = setup(pytester)
    pytester.runpytest_inprocess("tests_host", "--snapshot", str(snap), "--report-dir", "out",
                                 "--vm-password", "ab", "--dbc-client",
                                 "http://admin:url-pw-60d@127.0.0.1:9/")
    folder = only_folder(pytester.path / "out")
    args = json.loads((folder / "results.json").read_text())["run"]["args"]
    assert "ab" not in args and "--vm-password" in args
    assert args[args.index("--vm-password") + 1] == "***"
    assert "http://admin:***@127.0.0.1:9/" in args
    assert "url-pw-60d" not in all_text(folder)


@pytest.mark.parametrize("scheme", ["paramiko", "ssh"])
def test_a_password_in_a_hosts_url_is_refused(pytester: pytest.Pytester, scheme: str) -> None:
    setup(pytester)
    result = pytester.runpytest_subprocess("tests_host", "--hosts",
                                           f"{scheme}://root:hosts-pw-61e@127.0.0.1")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "hosts-pw-61e" not in out
    assert f"{scheme}://root:***@127.0.0.1" in out and "--ssh-identity-file" in out


def test_a_password_in_a_hosts_url_is_refused_by_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", str(tmp_path / "s"), "--hosts", "ssh://root:cli-pw-62f@h"]) == 2
    err = capsys.readouterr().err
    assert "cli-pw-62f" not in err and "--ssh-identity-file" in err


def test_password_file_is_read(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from dbc_accept.guest.fixtures import _credentials

    path = tmp_path / "pw"
    path.write_text("file-pw-63a\n")
    config = pytester.parseconfig("-p", "dbc_accept.plugin", "--vm-password-file", str(path))
    assert _credentials(config, "dbc").password == "file-pw-63a"


def test_paramiko_hosts_are_warned_about_host_keys(pytester: pytest.Pytester) -> None:
    setup(pytester)
    result = pytester.runpytest_subprocess("tests_host", "--no-report",
                                           "--hosts", "paramiko://127.0.0.1:1")
    out = result.stdout.str() + result.stderr.str()
    assert "accepts a host key it does not know" in out and "prefer ssh://" in out, out


def test_node_dat_read_in_a_batch_is_registered_at_once(tmp_path: Path) -> None:
    from dbc_accept.facts import NodeOptions
    from dbc_accept.nodecache import NodeReadTarget
    from dbc_accept.secrecy import known_secrets
    from dbc_accept.target import LocalTarget

    bare = "BatchedBareKey0a1b2c3d4e5f60718293"
    folder = tmp_path / "dbc_repo"
    (folder / "dat").mkdir(parents=True)
    (folder / "dat" / "node.dat").write_text(f"node_id=2gfpp3MAB4Aa\n{bare}\n")
    batch = NodeReadTarget(LocalTarget(), NodeOptions(dbc_dir=str(folder)))
    batch.prefetch()  # the file came in the node's answer, not through read_text
    assert bare in known_secrets()
    assert bare in batch.export()["files"][f"{folder}/dat/node.dat"][1]  # as the node gave it
