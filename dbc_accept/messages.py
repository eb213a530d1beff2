"""One message catalogue for what people read: verdict lines, fix headings, report headings.

``t(key)`` gives the text in the run's language (``--lang``, else the locale: zh_* gives
Chinese). Check ids, test ids and results.json stay the same in every language.
"""

from __future__ import annotations

import os

LANGS = ("en", "zh")

CATALOGUE: dict[str, dict[str, str]] = {
    "what_to_fix": {"en": "dbc-accept: what to fix", "zh": "dbc-accept: 需要修复的问题"},
    "fix": {"en": "fix", "zh": "修复"},
    "observed": {"en": "observed", "zh": "观察到"},
    "expected": {"en": "expected", "zh": "应为"},
    "covers": {"en": "covers", "zh": "涉及"},
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
    "host_heading": {"en": "The host as tested", "zh": "被测主机"},
    "guest_heading": {"en": "The guest as tested", "zh": "被测虚拟机"},
    "controller_heading": {"en": "The machine that ran the tests (Python, plugins)",
                           "zh": "运行测试的机器（Python、插件）"},
    "bench_heading": {"en": "CNN benchmark", "zh": "CNN 基准测试"},
    "plot_caption": {"en": "Each run as a share of its reference (1.0 = the reference)",
                     "zh": "每次运行相对参考值的比例（1.0 = 参考值）"},
}

_lang = ["en"]


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
