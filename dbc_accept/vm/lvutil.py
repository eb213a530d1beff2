"""libvirt-python, imported on use, with its default stderr error printer silenced."""

from __future__ import annotations

from typing import Any

_quiet = False


def lv() -> Any:
    """The libvirt module (the plugin must load where libvirt-python is missing)."""
    global _quiet
    import libvirt

    if not _quiet:
        # errors reach us as exceptions; the default handler would also print them
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _quiet = True
    return libvirt


def connect(uri: str) -> Any:
    """A read-write connection to ``uri``."""
    return lv().open(uri)


def code(exc: BaseException) -> int | None:
    """The libvirt error code of an exception, None for other exceptions."""
    get = getattr(exc, "get_error_code", None)
    return int(get()) if callable(get) and get() is not None else None


def broken_link(exc: BaseException) -> bool:
    """True when the error says the connection to libvirtd broke (EOF, socket closed)."""
    libvirt = lv()
    get = getattr(exc, "get_error_domain", None)
    domain = get() if callable(get) else None
    return domain == libvirt.VIR_FROM_RPC and code(exc) in (libvirt.VIR_ERR_SYSTEM_ERROR,
                                                            libvirt.VIR_ERR_INTERNAL_ERROR)


def message(exc: BaseException) -> str:
    get = getattr(exc, "get_error_message", None)
    text = get() if callable(get) else None
    return str(text or exc)
