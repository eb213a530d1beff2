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
def test_image_present(node: HostFacts, item: str) -> None:
    image = node.get(gather_image, item)
    check(image.present, "images.template", observed=f"{item} does not exist",
          expected=f"{item} present")
    check(not image.error, "images.template", observed=f"cannot read {item}: {image.error}",
          expected=f"{item} readable")


@each(_images, empty="no images")
def test_image_is_qcow2(node: HostFacts, item: str) -> None:
    image = node.get(gather_image, item)
    check(image.present and not image.error, "images.template",
          observed=f"{item} missing or unreadable", expected=f"{item} present and readable")
    check(image.header is not None, "images.qcow2", observed=f"{item}: {image.invalid}",
          expected="a qcow2 image (version 2 or 3)")
    header = image.header
    assert header is not None
    observe(qcow2_version=header.version, virtual_size=header.virtual_size,
            backing_file=header.backing_file)
    check(header.virtual_size > 0, "images.qcow2", observed=f"{item}: virtual size 0",
          expected="a virtual size above 0")
    check("corrupt" not in header.incompatible, "images.qcow2",
          observed=f"{item}: qcow2 header marks the image corrupt",
          expected="a consistent image (`qemu-img check`)")
