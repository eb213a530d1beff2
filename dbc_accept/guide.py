"""The install guide's step names, readable without a CJK font.

The guide numbers its sections (一) to (十五). Written alone such a name is a box where no
CJK font is installed, so it is shown as "step 3 (三)" (HTML, terminal) or "step 3"
(plain ASCII: the plot's font).
"""

from __future__ import annotations

import re

DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_STEP = re.compile(r"\(([一二三四五六七八九十]+)\)")


def numeral(text: str) -> int | None:
    """一 -> 1, 十 -> 10, 十二 -> 12, 二十一 -> 21; None for anything else."""
    if not text or any(c not in DIGITS and c != "十" for c in text):
        return None
    if "十" not in text:
        return DIGITS[text] if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    if (tens and tens not in DIGITS) or (ones and ones not in DIGITS) or "十" in ones:
        return None
    return (DIGITS[tens] if tens else 1) * 10 + (DIGITS[ones] if ones else 0)


def step_number(step: str) -> int | None:
    """The number of a step name such as "(三) vfio"; None when it names none."""
    found = _STEP.search(step)
    return numeral(found.group(1)) if found else None


def readable(text: str, ascii_only: bool = False) -> str:
    """Every "(三)" in ``text`` as "step 3 (三)", or "step 3" when ``ascii_only``."""

    def one(match: re.Match[str]) -> str:
        n = numeral(match.group(1))
        if n is None:
            return match.group(0)
        return f"step {n}" if ascii_only else f"step {n} {match.group(0)}"

    return _STEP.sub(one, text)
