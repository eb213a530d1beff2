"""The test VM's errors; each names the remedies id of its fix in ``check``."""

from __future__ import annotations


class VmError(Exception):
    """The test VM could not be made, reached or removed."""

    def __init__(self, message: str, check: str = "vm.boot") -> None:
        super().__init__(message)
        self.check = check


class VmRefused(VmError):
    """Creating the VM would touch something not ours (a renter's GPU, a name in use)."""

    def __init__(self, message: str, check: str = "vm.gpu_busy") -> None:
        super().__init__(message, check)


class VmBootTimeout(VmError):
    """No address in time, or the VM stopped while booting; the message has the console."""


class StorageError(VmError):
    """The overlay could not be made (missing template, no usable pool, libvirt error).

    ``exists`` is True when a volume of the run's name was already there (not ours).
    """

    def __init__(self, message: str, exists: bool = False, check: str = "vm.boot") -> None:
        super().__init__(message, check)
        self.exists = exists
