"""Extra attachments for the report: any fixture or test can add a named text.

``attach(item, name, text)`` shows the text under that test in report.html (and in the
result folder); ``attach(config, name, text)`` adds it to the whole run (the domain XML,
a console log). Texts are scrubbed of secrets before they are written anywhere.
"""

from __future__ import annotations

from typing import Any

import pytest

MAX_CHARS = 200_000  # per attachment: a log tail, not a whole log
ITEM_KEY = pytest.StashKey["list[tuple[str, str]]"]()
SESSION_KEY = pytest.StashKey["dict[str, str]"]()
SHIPPED_KEY = pytest.StashKey["dict[str, str]"]()


def attach(item_or_config: pytest.Item | pytest.Config, name: str, text: str) -> None:
    """Add ``text`` under ``name`` to a test's report (an Item) or to the run's (a Config)."""
    text = text if len(text) <= MAX_CHARS else "[...]\n" + text[-MAX_CHARS:]
    if isinstance(item_or_config, pytest.Item):
        item_or_config.stash.setdefault(ITEM_KEY, []).append((name, text))
    else:
        item_or_config.stash.setdefault(SESSION_KEY, {})[name] = text


def item_attachments(item: pytest.Item) -> list[tuple[str, str]]:
    """The attachments added to ``item``; each is returned once."""
    found = item.stash.get(ITEM_KEY, [])
    item.stash[ITEM_KEY] = []
    return list(found)


def new_session_attachments(config: pytest.Config) -> list[tuple[str, str]]:
    """Run attachments not yet passed on (xdist ships them with the next test report)."""
    added: dict[str, str] = config.stash.get(SESSION_KEY, {})
    current = dict(added)
    current.update(_guest_fixture_texts(config))
    shipped = config.stash.setdefault(SHIPPED_KEY, {})
    new = [(k, v) for k, v in current.items() if shipped.get(k) != v]
    shipped.update(new)
    return new


def _guest_fixture_texts(config: pytest.Config) -> dict[str, str]:
    """What the guest fixture keeps in the stash: the domain XML and the console tail."""
    from dbc_accept.guest import fixtures  # the guest fixture's own keys

    out: dict[str, Any] = {}
    xml = config.stash.get(fixtures.DOMAIN_XML_KEY, "")
    console = config.stash.get(fixtures.CONSOLE_TAIL_KEY, "")
    if xml:
        out["test VM domain XML"] = xml
    if console:
        out["test VM serial console (tail)"] = console
    return out
