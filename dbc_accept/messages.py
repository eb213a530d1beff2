"""One message catalogue for what people read: verdict lines, fix headings, report headings.

``t(key)`` gives the text in the run's language (``--lang``, else the locale: zh_* gives
Chinese). Check ids, test ids and results.json stay the same in every language. The fixes
are in :mod:`dbc_accept.remedies` (English) and :mod:`dbc_accept.remedies_zh`, keyed by
check id and looked up through the same language. ``fill`` puts the words for where the
in-guest tests run (``--guest``: the test VM, an ssh:// guest, or this machine) into a text.
"""

from __future__ import annotations

import os

LANGS = ("en", "zh")

CATALOGUE: dict[str, dict[str, str]] = {
    "what_to_fix": {"en": "dbc-accept: what to fix", "zh": "dbc-accept: 需要修复的问题"},
    "fix": {"en": "fix", "zh": "修复"},
    "observed": {"en": "observed", "zh": "实际"},
    "expected": {"en": "expected", "zh": "应为"},
    "covers": {"en": "covers", "zh": "涉及"},
    "on_node": {"en": "on", "zh": "节点"},
    "level": {"en": "level", "zh": "级别"},
    "check": {"en": "check", "zh": "检查项"},
    "READY": {"en": "READY", "zh": "就绪 (READY)"},
    "READY WITH WARNINGS": {"en": "READY WITH WARNINGS",
                            "zh": "就绪但有警告 (READY WITH WARNINGS)"},
    "NOT READY": {"en": "NOT READY", "zh": "未就绪 (NOT READY)"},
    "PASS": {"en": "PASS", "zh": "通过"},
    "FAIL": {"en": "FAIL", "zh": "失败"},
    "WARN": {"en": "WARN", "zh": "警告"},
    "SKIP": {"en": "SKIP", "zh": "跳过"},
    "install_guide": {"en": "install guide", "zh": "安装指南"},
    "report_title": {"en": "DBC node acceptance", "zh": "DBC 节点验收"},
    "verdict": {"en": "Verdict", "zh": "结论"},
    "node": {"en": "Node", "zh": "节点"},
    "node_id": {"en": "Node id", "zh": "节点 ID"},
    "date": {"en": "Date", "zh": "日期"},
    "profile": {"en": "Profile", "zh": "配置"},
    "counts": {"en": "Checks", "zh": "检查"},
    "fixes_heading": {"en": "What to fix, root causes first",
                      "zh": "需要修复的问题（根本原因在前）"},
    "no_fixes": {"en": "Nothing to fix.", "zh": "没有需要修复的问题。"},
    "nodes_heading": {"en": "Nodes", "zh": "节点列表"},
    "host_heading": {"en": "The host as tested", "zh": "被测主机"},
    "guest_heading": {"en": "The guest as tested", "zh": "被测虚拟机"},
    "controller_heading": {"en": "The machine that ran the tests (Python, plugins)",
                           "zh": "运行测试的机器（Python、插件）"},
    "bench_heading": {"en": "CNN benchmark", "zh": "CNN 基准测试"},
    "plot_caption": {"en": "Each run as a share of its reference (1.0 = the reference)",
                     "zh": "每次运行相对参考值的比例（1.0 = 参考值）"},
}

# Placeholders of fix texts and skip reasons -> their words per guest kind: (en, zh).
GUEST_WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "{guest}": {"vm": ("the test VM", "测试虚拟机"), "ssh": ("the guest", "被测机器"),
                "local": ("this machine", "本机")},
    "{in_guest}": {"vm": ("in the guest image", "在虚拟机镜像中"),
                   "ssh": ("on the guest", "在被测机器上"),
                   "local": ("on this machine", "在本机上")},
    "{no_gpus}": {"vm": ("none was passed to the test VM", "没有显卡直通给测试虚拟机"),
                  "ssh": ("the guest's GPUs are not known", "不知道被测机器有哪些显卡"),
                  "local": ("this machine shows no NVIDIA GPU", "本机没有 NVIDIA 显卡")},
}
GUEST_KINDS = ("vm", "ssh", "local")

_lang = ["en"]
_guest_kind = ["vm"]


def lang_from_locale(environ: dict[str, str] | None = None) -> str:
    """zh when the locale (LC_ALL, LC_MESSAGES, LANG, first set) is Chinese, else en."""
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def set_lang(lang: str | None) -> str:
    """Use ``lang`` (en, zh) from now on; None: from the locale. Returns the language."""
    chosen = lang or lang_from_locale()
    if chosen not in LANGS:
        raise ValueError(f"--lang {chosen}: choose one of {', '.join(LANGS)}")
    _lang[0] = chosen
    return chosen


def current() -> str:
    return _lang[0]


def t(key: str, lang: str | None = None) -> str:
    """The text of ``key`` in ``lang`` (default: the run's); the key itself when unknown."""
    entry = CATALOGUE.get(key)
    if entry is None:
        return key
    return entry.get(lang or _lang[0]) or entry["en"]


def set_guest_kind(kind: str) -> None:
    """Where the in-guest tests run from now on: vm, ssh or local (``--guest``)."""
    if kind not in GUEST_KINDS:
        raise ValueError(f"guest kind {kind!r}: choose one of {', '.join(GUEST_KINDS)}")
    _guest_kind[0] = kind


def guest_kind() -> str:
    return _guest_kind[0]


def fill(text: str, lang: str | None = None, kind: str | None = None) -> str:
    """``text`` with {guest} and {in_guest} in the words of the guest kind and language."""
    column = 1 if (lang or _lang[0]) == "zh" else 0
    for placeholder, words in GUEST_WORDS.items():
        if placeholder in text:
            text = text.replace(placeholder, words[kind or _guest_kind[0]][column])
    return text
