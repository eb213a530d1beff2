"""The script a person reads and runs: header, what needs a person, the steps, the footer.

:func:`render` writes the whole script; :func:`step_script` one step with the shell
functions, as ``--apply`` runs it.
"""

from __future__ import annotations

import textwrap

from dbc_accept.fix.resolve import Plan, Step
from dbc_accept.fix.shell import FOOTER, PRELUDE

WIDTH = 96


def _comment(text: str, indent: str = "") -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 2 - len(indent), break_long_words=False,
                          break_on_hyphens=False) or [""]
    return [f"# {indent}{line}".rstrip() for line in lines[:1]] + \
        [f"# {indent}  {line}".rstrip() for line in lines[1:]]


def step_header(step: Step, number: int, total: int) -> list[str]:
    lines = [f"# --- step {number} of {total}: {step.title}"]
    if step.checks:
        guide = f"; install guide {', '.join(step.guide)}" if step.guide else ""
        lines += _comment(f"for: {', '.join(step.checks)}{guide}")
    else:
        lines += _comment("acts only when an earlier step changed what it depends on")
    return lines


def step_script(step: Step) -> str:
    """One step, runnable on its own (with the shell functions)."""
    return PRELUDE + "\n" + "\n".join(step.body()) + "\n"


def render(plan: Plan, source: str, warn_steps: bool) -> str:
    """The whole script for ``plan``; ``source`` says where the findings came from."""
    out = ["#!/bin/sh",
           f"# dbc-accept fix for {source}",
           "# Read it before you run it (as root: sudo sh THIS_FILE). Every step looks first and",
           "# changes only what is missing: running the script twice changes nothing the second",
           "# time. It never formats a disk; what needs a person is written as comments only.",
           "# " + ("WARN findings are fixed too where a script can (marked WARN)." if warn_steps
                   else "WARN findings are left out (--fails-only)."),
           ""]
    out += _manual(plan)
    if not plan.steps:
        if plan.empty:
            said = "# Nothing to fix: no FAIL" + (" or WARN." if warn_steps else ".")
        else:
            said = "# Nothing for a script to fix: see the notes above."
        out += [said,
                "echo 'dbc-accept fix: nothing to fix'", ""]
        return "\n".join(out)
    out += [PRELUDE]
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, 1):
        out += step_header(step, number, total)
        out += [f"echo 'step {number} of {total}: {_sq(step.title)}'", *step.body(), ""]
    out += [FOOTER]
    return "\n".join(out)


def _manual(plan: Plan) -> list[str]:
    out: list[str] = []
    if plan.notes:
        out += ["# === needs a person (not run by this script) ==="]
        for note in plan.notes:
            out += _comment(f"[{note.check}] {note.level}: {note.text}")
        out += [""]
    if plan.unchecked:
        out += ["# === could not be checked (the test failed before it could judge) ==="]
        for line in plan.unchecked:
            out += _comment(line)
        out += [""]
    return out


def _sq(text: str) -> str:
    """Text safe inside single quotes."""
    return text.replace("'", "'\\''")
