"""In-line probes: short scripts a node runs as ``python3 -c TEXT ARGS`` or ``sh -c TEXT``.

Each has a name and a version (:data:`PROBES`). A snapshot finds a probe's command by its
stable key (:func:`stable_key`): the command with the script's text replaced by
``probe:NAME@VERSION``, so a snapshot still answers for a probe after its text is edited.
Edit a text freely; bump its version when its output changes meaning (a snapshot then
answers the new version as a command that was not captured). Records written before
commands carried their probe's key are known by their text (``data/inline_probes.json``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

EARLIER_TEXTS = Path(__file__).resolve().parent / "data" / "inline_probes.json"

# Opens /dev/kvm and asks KVM_GET_API_VERSION (ioctl 0xAE00), as kvm-ok does. Kept to
# Python 3.8 (Ubuntu 20.04's python3).
KVM = (
    "import fcntl, json, os\n"
    "r = {'exists': os.path.exists('/dev/kvm'), 'api': None, 'error': ''}\n"
    "try:\n"
    "    fd = os.open('/dev/kvm', os.O_RDWR | os.O_CLOEXEC)\n"
    "    r['api'] = fcntl.ioctl(fd, 0xAE00)\n"
    "    os.close(fd)\n"
    "except OSError as e:\n"
    "    r['error'] = '%s: %s' % (e.filename or 'ioctl KVM_GET_API_VERSION', e.strerror)\n"
    "print(json.dumps(r))\n"
)

# One live libvirt connection through URI (argv[1]). Runs on the node with its python3 (3.8
# on Ubuntu 20.04, the oldest a node runs; 3.10 on 22.04): stdlib and libvirt only. It prints
# one JSON document (see dbc_accept.facts.libvirtconn).
LIBVIRT = r'''
import json, sys
import xml.etree.ElementTree as ET
NS = "urn:dbc-accept:vm:1"
STATES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown",
          5: "shutoff", 6: "crashed", 7: "pmsuspended"}
out = {"connected": False}
try:
    import libvirt
except ImportError as exc:
    out.update(error_code=-1, error="cannot import libvirt: %s" % exc)
    print(json.dumps(out)); sys.exit(0)
libvirt.registerErrorHandler(lambda ctx, err: None, None)
def hostdevs(xml):
    found = []
    for src in ET.fromstring(xml).findall("./devices/hostdev/source/address"):
        a = src.attrib
        try:
            found.append("%04x:%02x:%02x.%x" % tuple(int(a.get(k, "0"), 16) for k in
                                                    ("domain", "bus", "slot", "function")))
        except ValueError:
            pass
    return found
def tagged(dom):
    try:
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS)
        return True
    except libvirt.libvirtError:
        return False
try:
    conn = libvirt.open(sys.argv[1])
    out["connected"] = True
    caps = ET.fromstring(conn.getCapabilities())
    out["domain_types"] = sorted({d.get("type") for d in caps.findall("./guest/arch/domain")})
    out["lib_version"] = conn.getLibVersion()
    out["hv_version"] = conn.getVersion()
    out["hv_type"] = conn.getType()
    out["domains"] = [{"name": d.name(), "state": STATES.get(d.state()[0], "unknown"),
                       "tagged": tagged(d), "hostdevs": hostdevs(d.XMLDesc(0))}
                      for d in conn.listAllDomains(0)]
    out["networks"] = [{"name": n.name(), "active": bool(n.isActive()),
                        "autostart": bool(n.autostart())} for n in conn.listAllNetworks(0)]
    conn.close()
except libvirt.libvirtError as exc:
    out.update(error_code=exc.get_error_code(), error=str(exc))
print(json.dumps(out))
'''

# The same document through virsh, for a python3 without the libvirt module.
LIBVIRT_VIRSH = r'''
import json, re, subprocess, sys
import xml.etree.ElementTree as ET
NS = "urn:dbc-accept:vm:1"
STATES = {"no state": "nostate", "running": "running", "idle": "blocked", "paused": "paused",
          "in shutdown": "shutdown", "shut off": "shutoff", "crashed": "crashed",
          "pmsuspended": "pmsuspended"}
uri = sys.argv[1]
def virsh(*args):
    try:
        p = subprocess.run(["virsh", "-q", "-c", uri] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=50)
    except FileNotFoundError:
        return 127, "", "virsh: not found"
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
def packed(text):
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return int(m.group(1)) * 1000000 + int(m.group(2)) * 1000 + int(m.group(3)) if m else 0
def hostdevs(xml):
    found = []
    for src in ET.fromstring(xml).findall("./devices/hostdev/source/address"):
        a = src.attrib
        try:
            found.append("%04x:%02x:%02x.%x" % tuple(int(a.get(k, "0"), 16) for k in
                                                    ("domain", "bus", "slot", "function")))
        except ValueError:
            pass
    return found
out = {"connected": False}
rc, caps, err = virsh("capabilities")
if rc != 0:
    lines = [l[len("error: "):] if l.startswith("error: ") else l for l in err.strip().splitlines()]
    out.update(error_code=-1 if rc == 127 else -2, error="; ".join(lines) or "virsh exited %d" % rc)
    print(json.dumps(out)); sys.exit(0)
out["connected"] = True
found = ET.fromstring(caps).findall("./guest/arch/domain")
out["domain_types"] = sorted({d.get("type") for d in found})
version = dict(l.split(":", 1) for l in virsh("version")[1].splitlines() if ":" in l)
out["lib_version"] = packed(version.get("Using library", ""))
hv = version.get("Running hypervisor", "").split()
out["hv_version"] = packed(" ".join(hv[1:]))
out["hv_type"] = hv[0] if hv else ""
out["domains"] = []
for name in [n for n in virsh("list", "--all", "--name")[1].splitlines() if n.strip()]:
    state = virsh("domstate", name)[1].strip()
    out["domains"].append({"name": name, "state": STATES.get(state, "unknown"),
                           "tagged": virsh("metadata", name, NS)[0] == 0,
                           "hostdevs": hostdevs(virsh("dumpxml", name)[1] or "<domain/>")})
out["networks"] = []
for name in [n for n in virsh("net-list", "--all", "--name")[1].splitlines() if n.strip()]:
    info = dict((k.strip(), v.strip()) for k, v in
                (l.split(":", 1) for l in virsh("net-info", name)[1].splitlines() if ":" in l))
    out["networks"].append({"name": name, "active": info.get("Active") == "yes",
                            "autostart": info.get("Autostart") == "yes"})
print(json.dumps(out))
'''

# Creates and removes one hidden file: proves the kernel accepts a write (read-only
# mounts, a full disk, a broken file system all fail here) and reports the mode the
# guide sets with `chmod 777 /data`. The folder comes in as $1, never in the script.
DATA_WRITE = (
    'stat -c "mode=%a owner=%U" -- "$1" || exit 2; '
    'f=$(mktemp -p "$1" .dbc-accept-write.XXXXXX) || exit 3; '
    'rm -f -- "$f" || exit 4; echo written=1'
)


@dataclass(frozen=True)
class InlineProbe:
    """A script run with ``INTERPRETER -c TEXT``, known by name and version."""

    name: str
    version: int
    interpreter: str  # "python3" or "sh"
    text: str

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


PROBES: dict[str, InlineProbe] = {p.name: p for p in (
    InlineProbe("kvm", 1, "python3", KVM),
    InlineProbe("libvirt", 1, "python3", LIBVIRT),
    InlineProbe("libvirt-virsh", 1, "python3", LIBVIRT_VIRSH),
    InlineProbe("data-write", 1, "sh", DATA_WRITE),
)}


def argv(name: str, *args: str) -> tuple[str, ...]:
    """The command that runs probe ``name`` (its text as :data:`PROBES` holds it now)."""
    probe = PROBES[name]
    return (probe.interpreter, "-c", probe.text, *args)


@lru_cache(maxsize=None)
def earlier_texts() -> dict[str, str]:
    """SHA-256 of a text earlier versions ran -> the probe's ``NAME@VERSION``."""
    found: dict[str, str] = json.loads(EARLIER_TEXTS.read_text(encoding="utf-8"))["earlier_texts"]
    return found


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def probe_key(command: Sequence[str]) -> str | None:
    """``NAME@VERSION`` of the in-line probe a command runs; None when it runs none."""
    if len(command) < 3 or command[1] != "-c":
        return None
    for probe in PROBES.values():
        if probe.interpreter == command[0] and probe.text == command[2]:
            return probe.key
    return earlier_texts().get(text_digest(command[2]))


def stable_key(command: Sequence[str], key: str | None = None) -> tuple[str, ...] | None:
    """The command with its script replaced by ``probe:NAME@VERSION``; None: not a probe.

    ``key`` names the probe where it is known (a snapshot record's ``probe``), else the
    script's text tells it (:func:`probe_key`).
    """
    key = key or probe_key(command)
    if key is None or len(command) < 3:
        return None
    return (command[0], command[1], f"probe:{key}", *command[3:])
