"""The report's first screen: who, verdict, date, profile and the fixes, root causes first.

Then the node as tested (host and guest facts) and, folded, the machine that ran pytest.
Every text passes the redactor; step names of the install guide are written "step 3 (三)"
and the page names a CJK font stack, so it reads where no CJK font is installed too.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from dbc_accept.messages import t
from dbc_accept.report.redact import Redactor
from dbc_accept.story import FixGroup, short_id

FONTS = ('system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", '
         '"Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", '
         'sans-serif')
COLORS = {"READY": "#2e7d32", "READY WITH WARNINGS": "#ef6c00", "NOT READY": "#c62828"}
STYLE = f"""<style>
body, .dbc-front {{ font-family: {FONTS}; }}
.dbc-verdict {{ color: #fff; padding: .5em 1em; font-size: 1.6em; font-weight: bold;
  border-radius: 4px; margin: .3em 0; }}
.dbc-front {{ color: #111; }}
.dbc-facts td, .dbc-facts th {{ text-align: left; padding: .1em .8em .1em 0;
  vertical-align: top; color: #111; }}
.dbc-fixes li {{ margin-bottom: .6em; color: #111; }}
.dbc-fixes .lvl-fail {{ color: #c62828; font-weight: bold; }}
.dbc-fixes .lvl-warn {{ color: #ef6c00; font-weight: bold; }}
.dbc-fixes ul {{ margin: .2em 0; font-size: .9em; color: #333; }}
</style>"""


def _table(rows: dict[str, Any], r: Redactor) -> str:
    body = "".join(f"<tr><th>{escape(t(k))}</th>"
                   f"<td>{_value(v, r)}</td></tr>" for k, v in rows.items())
    return f"<table class='dbc-facts'>{body}</table>"


def _value(value: Any, r: Redactor) -> str:
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return "<br>".join(escape(r.scrub(", ".join(f"{k} {v}" for k, v in g.items())))
                               for g in value)
        return "<br>".join(escape(r.scrub(str(v))) for v in value) or "none"
    return escape(r.scrub(str(value)))


def fixes_html(groups: list[FixGroup], r: Redactor) -> str:
    """The grouped fixes: one item per fix, the checks and tests it covers under it."""
    if not groups:
        return f"<p>{escape(t('no_fixes'))}</p>"
    nodes = len({f.node for g in groups for _, f in g.findings})
    items = []
    for g in groups:
        covered = "".join(
            f"<li><code>{escape(f.check)}</code> "
            f"{escape(', '.join(short_id(n, f.node, nodes) for n in ids))}: "
            f"{escape(r.scrub(f.observed))} ({escape(t('expected'))}: "
            f"{escape(r.scrub(f.expected))})</li>" for f, ids in g.alike())
        items.append(f"<li><span class='lvl-{g.level}'>{escape(t(g.level.upper()))}</span> "
                     f"{escape(r.scrub(g.fix_text()))}<ul>{covered}</ul></li>")
    return f"<ol class='dbc-fixes'>{''.join(items)}</ol>"


def front_html(head: dict[str, Any], verdict: str, groups: list[FixGroup],
               host: dict[str, Any], guest: dict[str, Any], controller: dict[str, Any],
               r: Redactor) -> str:
    """The top of report.html (``head``: node, node_id, date, profile, counts)."""
    color = COLORS.get(verdict, COLORS["NOT READY"])
    parts = [STYLE, "<div class='dbc-front'>",
             f"<div class='dbc-verdict' id='dbc-verdict' style='background:{color}'>"
             f"{escape(t('verdict'))}: {escape(t(verdict))}</div>",
             _table(head, r),
             f"<h2 id='dbc-fixes'>{escape(t('fixes_heading'))}</h2>", fixes_html(groups, r)]
    if host:
        parts += [f"<h2>{escape(t('host_heading'))}</h2>", _table(host, r)]
    if guest:
        parts += [f"<h2>{escape(t('guest_heading'))}</h2>", _table(guest, r)]
    if controller:
        text = json.dumps(controller, indent=1, sort_keys=True, default=str)
        parts.append(f"<details><summary>{escape(t('controller_heading'))}</summary>"
                     f"<pre style='white-space:pre-wrap'>{escape(r.scrub(text))}</pre>"
                     "</details>")
    parts.append("</div>")
    return "".join(parts)


def title(node: str, verdict: str) -> str:
    return f"{t('report_title')}: {node}: {t(verdict)}"
