"""What is true of a host: pure parsers (text -> dataclass) and gatherers (target -> dataclass).

Nothing here asserts. A gatherer is a plain function ``gather_x(target) -> X`` that raises
:class:`~dbc_accept.verdict.FactError` when its source cannot be read or parsed. Tests reach
facts through :class:`HostFacts`, which runs each gatherer at most once per target and
session and replays its result (or its error) to every test that asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from dbc_accept.target import Target
from dbc_accept.verdict import FactError

T = TypeVar("T")


@dataclass(frozen=True)
class NodeOptions:
    """What the run says about where a node's facts are (None: found on the node, or not
    given): the values of the options the host checks read."""

    libvirt_uri: str | None = None  # --libvirt-uri
    vm_image: str | None = None  # --vm-image
    dbc_dir: str | None = None  # --dbc-dir
    node_dat_backup: str | None = None  # --node-dat-backup
    snapshot: str | None = None  # --snapshot: the node is a replayed snapshot
    listen_broadcast: float | None = None  # --listen-broadcast
    dbc_client: str | None = None  # --dbc-client


class HostFacts:
    """Lazy, memoized facts of one target."""

    def __init__(self, target: Target, options: NodeOptions | None = None) -> None:
        self.target = target
        self.options = options or NodeOptions()
        self._cache: dict[tuple[Any, ...], tuple[bool, Any]] = {}

    @property
    def name(self) -> str:
        return self.target.name

    def get(self, gatherer: Callable[..., T], *args: Any) -> T:
        """``gatherer(target, *args)``, once; its FactError is raised again each time.

        ``args`` must be hashable (paths, option values).
        """
        key = (gatherer, *args)
        if key not in self._cache:
            try:
                self._cache[key] = (True, gatherer(self.target, *args))
            except FactError as exc:
                self._cache[key] = (False, exc)
            except Exception as exc:  # a gatherer bug must fail the check, not crash the run
                name = getattr(gatherer, "__name__", repr(gatherer))
                self._cache[key] = (False, FactError(name, f"{type(exc).__name__}: {exc}",
                                                     verb="gather"))
        ok, value = self._cache[key]
        if not ok:
            raise value.with_traceback(None)  # afresh: the traceback must not grow per raise
        return value  # type: ignore[no-any-return]

    def try_get(self, gatherer: Callable[..., T], *args: Any) -> T | None:
        """Like :meth:`get`, but None when the fact could not be gathered (for parametrizing)."""
        try:
            return self.get(gatherer, *args)
        except FactError:
            return None


def read(target: Target, path: str) -> str:
    """Read a file or raise FactError naming the path and why."""
    try:
        return target.read_text(path)
    except FileNotFoundError:
        raise FactError(path, "no such file") from None
    except PermissionError:
        raise FactError(path, "permission denied (run as root)") from None
    except OSError as exc:
        raise FactError(path, exc.strerror or str(exc)) from None


def read_optional(target: Target, path: str) -> str | None:
    """Read a file; None when it does not exist; FactError when it exists but is unreadable."""
    try:
        return target.read_text(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise FactError(path, "permission denied (run as root)") from None
    except OSError as exc:
        raise FactError(path, exc.strerror or str(exc)) from None


def list_optional(target: Target, path: str) -> list[str]:
    """List a folder; [] when it does not exist."""
    try:
        return target.list_dir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError:
        raise FactError(path, "permission denied (run as root)") from None
    except OSError as exc:
        raise FactError(path, exc.strerror or str(exc)) from None


def link_optional(target: Target, path: str) -> str | None:
    """A link's target; None when the path is missing or not a link."""
    try:
        return target.read_link(path)
    except OSError:
        return None
