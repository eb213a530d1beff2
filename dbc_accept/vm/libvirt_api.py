"""libvirt-python, imported on use (its default stderr error printer silenced), and what
every caller needs of it: a connection, the code and text of a libvirt error, undefine."""

from __future__ import annotations

from typing import Any

_quiet = False


def load_libvirt() -> Any:
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
    return load_libvirt().open(uri)


def error_code(exc: BaseException) -> int | None:
    """The libvirt error code of an exception, None for other exceptions."""
    get = getattr(exc, "get_error_code", None)
    return int(get()) if callable(get) and get() is not None else None


def undefine(dom: Any) -> None:
    """Undefine a domain with its NVRAM, managed save, snapshot and checkpoint metadata."""
    libvirt = load_libvirt()
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if error_code(exc) not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        dom.undefine()  # a driver without these flags (the test driver) has no NVRAM


def broken_link(exc: BaseException) -> bool:
    """True when the error says the connection to libvirtd broke (EOF, socket closed)."""
    libvirt = load_libvirt()
    get = getattr(exc, "get_error_domain", None)
    domain = get() if callable(get) else None
    return domain == libvirt.VIR_FROM_RPC and error_code(exc) in (libvirt.VIR_ERR_SYSTEM_ERROR,
                                                            libvirt.VIR_ERR_INTERNAL_ERROR)


def error_message(exc: BaseException) -> str:
    """The libvirt error's message (the exception's text for other exceptions)."""
    get = getattr(exc, "get_error_message", None)
    text = get() if callable(get) else None
    return str(text or exc)
