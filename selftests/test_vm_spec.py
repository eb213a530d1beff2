"""VmSpec, check_env's sizing and the choice of GPU functions (no libvirt needed)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbc_accept.vm.domain_xml import build_domain_xml
from dbc_accept.vm.spec import (
    VmSpec,
    choose_gpus,
    new_run_id,
    normalize_bdf,
    run_id_origin,
    size_like_check_env,
)

GIB = 1024 * 1024  # KiB


@dataclass(frozen=True)
class Fn:
    """Shaped like the PCI facts gatherer's function record."""

    bdf: str
    vendor: str
    pci_class: str
    iommu_group: str | None


# Two GPUs with audio functions in their own groups, a third GPU sharing its group with a
# bridge and a USB controller, and an Intel NIC.
NODE = [
    Fn("0000:01:00.0", "0x10de", "0x030000", "14"),
    Fn("0000:01:00.1", "0x10de", "0x040300", "14"),
    Fn("0000:02:00.0", "0x10de", "0x030000", "15"),
    Fn("0000:02:00.1", "0x10de", "0x040300", "15"),
    Fn("0000:40:01.0", "0x1022", "0x060400", "30"),
    Fn("0000:41:00.0", "0x10de", "0x030200", "30"),
    Fn("0000:41:00.2", "0x10de", "0x0c0330", "30"),
    Fn("0000:05:00.0", "0x8086", "0x020000", "7"),
]


def test_all_takes_every_function_of_every_gpu_group_but_bridges() -> None:
    assert choose_gpus(NODE, "all") == [
        "0000:01:00.0", "0000:01:00.1", "0000:02:00.0", "0000:02:00.1",
        "0000:41:00.0", "0000:41:00.2",
    ]


def test_count_takes_the_first_gpus_in_address_order() -> None:
    assert choose_gpus(NODE, "1") == ["0000:01:00.0", "0000:01:00.1"]
    assert choose_gpus(NODE, "0") == []


def test_addresses_short_and_long_forms() -> None:
    assert choose_gpus(NODE, "41:00.0, 0000:02:00.0") == [
        "0000:41:00.0", "0000:41:00.2", "0000:02:00.0", "0000:02:00.1"]


def test_dict_records_and_no_iommu_fall_back_to_the_slot() -> None:
    fns = [{"address": "03:00.0", "vendor_id": "10de", "pci_class": "0300"},
           {"address": "03:00.1", "vendor_id": "10de", "pci_class": "0403"},
           {"address": "04:00.0", "vendor_id": "10de", "pci_class": "0403"}]
    assert choose_gpus(fns, "all") == ["0000:03:00.0", "0000:03:00.1"]


def test_the_pci_facts_records_are_taken_as_they_are() -> None:
    from dbc_accept.facts.pci import PciFunction

    fns = [PciFunction("0000:01:00.0", "10de", "2204", 0x030000, "vfio-pci", "14"),
           PciFunction("0000:01:00.1", "10de", "1aef", 0x040300, "vfio-pci", "14"),
           PciFunction("0000:00:01.0", "8086", "1901", 0x060400, "pcieport", "14"),
           PciFunction("0000:02:00.0", "10de", "20b5", 0x030200, "vfio-pci", "15")]
    assert choose_gpus(fns, "all") == ["0000:01:00.0", "0000:01:00.1", "0000:02:00.0"]
    assert choose_gpus(fns, "02:00.0") == ["0000:02:00.0"]


@pytest.mark.parametrize(("spec", "words"), [
    ("4", r"has 3 GPU\(s\)"),
    ("0000:05:00.0", "is not a GPU on this node"),
    ("0000:01:00.1", "is not a GPU on this node"),
    ("gpu0", "is not a PCI address"),
    (",", "give 'all', a count"),
    ("-1", "is not a PCI address"),
])
def test_bad_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        choose_gpus(NODE, spec)


def test_no_gpu_node() -> None:
    assert choose_gpus(NODE[-1:], "all") == []
    with pytest.raises(ValueError, match="has 0 GPU"):
        choose_gpus(NODE[-1:], "1")


def test_sizing_with_gpus_is_the_gpu_share_of_ram_minus_32_gb() -> None:
    # 256 GiB, 2 of 8 GPUs, 64 CPUs on 2 sockets with 2 threads per core
    mem, cpus = size_like_check_env(256 * GIB, 2, 8, 64, sockets=2, threads_per_core=2)
    assert mem == (256 - 32) * 1024 // 4
    assert cpus == (64 - 4) // 4


def test_sizing_without_gpu_is_ten_percent() -> None:
    mem, cpus = size_like_check_env(64 * GIB, 0, 0, 40)
    assert mem == int(64 * GIB * 0.1) // 1024
    assert cpus == 3


def test_sizing_floors_and_cap() -> None:
    assert size_like_check_env(24 * GIB, 1, 1, 2) == (1024, 1)  # RAM under 32 GB
    mem, _ = size_like_check_env(4096 * GIB, 8, 8, 256)
    assert mem == 1_000_000_000 // 1024
    with pytest.raises(ValueError):
        size_like_check_env(64 * GIB, 3, 2, 8)


def test_run_ids_name_their_process_and_time() -> None:
    now = time.time()
    rid = new_run_id(now=now, pid=4242)
    origin = run_id_origin(rid)
    assert origin is not None
    assert origin[1] == 4242 and abs(origin[0] - now) < 1.01
    assert run_id_origin("ci-17") is None
    assert new_run_id() != new_run_id()


def test_spec_validation() -> None:
    base = {"uri": "test:///default", "image": "/x.qcow2", "gpus": (), "memory_mib": 512,
            "vcpus": 1}
    VmSpec(**base, run_id="ci-1")  # type: ignore[arg-type]
    for bad in ({"virt_type": "xen"}, {"run_id": "../etc"}, {"gpus": ("01:00",)},
                {"vcpus": 0}):
        with pytest.raises(ValueError):
            VmSpec(**{**base, **bad})  # type: ignore[arg-type]
    assert normalize_bdf("0A:1f.3") == "0000:0a:1f.3"


@given(text=st.text(alphabet=st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)),
                    max_size=60))
@settings(max_examples=60, deadline=None)
def test_any_printable_value_survives_the_xml_tree(text: str) -> None:
    spec = VmSpec(uri="test:///default", image="/i.qcow2", gpus=(), memory_mib=256, vcpus=1,
                  kernel="/k" + text, cmdline=text, console_log="/log" + text, run_id="p1")
    root = ET.fromstring(build_domain_xml(spec, "dbc-accept-p1", "/o" + text))
    assert root.findtext("os/cmdline") == (text or None)
    assert root.findtext("os/kernel") == "/k" + text
    assert root.find("devices/disk/source").get("file") == "/o" + text  # type: ignore[union-attr]
    assert root.find("devices/serial/source").get("path") == "/log" + text  # type: ignore[union-attr]


def test_control_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        VmSpec(uri="test:///default", image="/i.qcow2", gpus=(), memory_mib=256, vcpus=1,
               cmdline="console=ttyS0\x00")
