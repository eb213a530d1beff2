"""(六) The VM template /data/ubuntu.qcow2 (and --vm-image): present, readable, qcow2."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.images import TEMPLATE, gather_image
from dbc_accept.plugin import each
from dbc_accept.verdict import check, observe

pytestmark = pytest.mark.host


def _images(node: HostFacts) -> list[tuple[str, str]]:
    paths = dict.fromkeys([TEMPLATE, node.options.vm_image or TEMPLATE])
    return [(path, path) for path in paths]


@each(_images, empty="no images")
def test_image_present(node: HostFacts, entry: str) -> None:
    image = node.get(gather_image, entry)
    check(image.present, "images.template", observed=f"{entry} does not exist",
          expected=f"{entry} present")
    check(not image.error, "images.template", observed=f"cannot read {entry}: {image.error}",
          expected=f"{entry} readable")


@each(_images, empty="no images")
def test_image_is_qcow2(node: HostFacts, entry: str) -> None:
    image = node.get(gather_image, entry)
    check(image.present and not image.error, "images.template",
          observed=f"{entry} missing or unreadable", expected=f"{entry} present and readable")
    check(image.header is not None, "images.qcow2", observed=f"{entry}: {image.invalid}",
          expected="a qcow2 image (version 2 or 3)")
    header = image.header
    assert header is not None
    observe(qcow2_version=header.version, virtual_size=header.virtual_size,
            backing_file=header.backing_file)
    check(header.virtual_size > 0, "images.qcow2", observed=f"{entry}: virtual size 0",
          expected="a virtual size above 0")
    check("corrupt" not in header.incompatible, "images.qcow2",
          observed=f"{entry}: qcow2 header marks the image corrupt",
          expected="a consistent image (`qemu-img check`)")
