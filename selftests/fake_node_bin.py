"""Stand-ins for the commands a `dbc-accept fix` script runs, acting on a folder that stands
for / (``DBC_FIX_ROOT``), the way the kernel, systemd, libvirt and apt would.

Each command that changes something writes its command line to ``$FAKE_LOG``; the queries
(is-enabled, is-active, net-info, dpkg-query, apt-cache) write nothing. A test runs a script
twice with these first on PATH and reads the log of the second run: it must be empty.
"""

from __future__ import annotations

import os
from pathlib import Path

LOG = 'echo "$(basename "$0") $*" >> "$FAKE_LOG"'

FAKES = {
    "sysctl": f"""
kv=$(eval echo "\\${{$#}}"); k=${{kv%%=*}}; v=${{kv#*=}}
p="$DBC_FIX_ROOT/proc/sys/$(printf '%s' "$k" | tr . /)"
mkdir -p "$(dirname "$p")"; echo "$v" > "$p"; {LOG}
""",
    "modprobe": f"""
R=$DBC_FIX_ROOT; name=$(printf '%s' "$1" | tr - _)
echo "$name 16384 0 - Live 0x0" >> "$R/proc/modules"; mkdir -p "$R/sys/module/$name"
case $name in
  tun) mkdir -p "$R/dev/net"; : > "$R/dev/net/tun" ;;
  vhost_net) : > "$R/dev/vhost-net" ;;
  br_netfilter) mkdir -p "$R/proc/sys/net/bridge"
    for k in iptables ip6tables; do echo 0 > "$R/proc/sys/net/bridge/bridge-nf-call-$k"; done ;;
  vfio_pci) mkdir -p "$R/sys/bus/pci/drivers/vfio-pci" ;;
esac
{LOG}
""",
    "systemctl": """
R=$DBC_FIX_ROOT; verb=$1; shift; [ "$1" != -q ] || shift; [ "$1" != --now ] || shift
case $verb in
  is-enabled) [ -L "$R/etc/systemd/system/multi-user.target.wants/$1" ]; exit ;;
  is-active) [ -e "$R/run/fake-active/$1" ]; exit ;;
  mask) mkdir -p "$R/etc/systemd/system"; ln -sfn /dev/null "$R/etc/systemd/system/$1" ;;
  enable) mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
    ln -sfn "/lib/systemd/system/$1" "$R/etc/systemd/system/multi-user.target.wants/$1" ;;
  start|restart) mkdir -p "$R/run/fake-active"; : > "$R/run/fake-active/$1" ;;
esac
echo "systemctl $verb $*" >> "$FAKE_LOG"
""",
    "virsh": f"""
while [ "$1" = -q ] || [ "$1" = -c ]; do [ "$1" = -c ] && shift; shift; done
s="$DBC_FIX_ROOT/run/fake-virsh"; mkdir -p "$s"; verb=$1; net=$2
case $verb in
  net-info) [ -e "$s/$net" ] || exit 1; cat "$s/$net"; exit 0 ;;
  net-define) net=$(basename "$2" .xml); printf 'Active: no\\nAutostart: no\\n' > "$s/$net" ;;
  net-start) sed -i 's/^Active: no/Active: yes/' "$s/$net" ;;
  net-autostart) sed -i 's/^Autostart: no/Autostart: yes/' "$s/$net" ;;
esac
{LOG}
""",
    "dpkg-query": """
p=$(eval echo "\\${$#}")
awk -v p="$p" '$0 == "Package: " p {f=1; next} f && /^Status:/ {sub(/^Status: /, ""); print;
  found=1; exit} /^$/ {f=0} END {exit !found}' "$DBC_FIX_ROOT/var/lib/dpkg/status"
""",
    "apt-cache": "exit 0",
    "apt-get": f"""
{LOG}
[ "$1" = install ] || exit 0
shift; st="$DBC_FIX_ROOT/var/lib/dpkg/status"
for p in "$@"; do
  [ "$p" = -y ] && continue
  awk -v p="$p" '$0 == "Package: " p {{s=1; found=1}} s && /^Status:/ {{$0 = "Status: install ok \
installed"}} /^$/ {{s=0}} {{print}} END {{if (!found) printf "\\nPackage: %s\\nStatus: install \
ok installed\\nVersion: 1\\n", p}}' "$st" > "$st.new"
  cat "$st.new" > "$st"; rm -f "$st.new"
done
""",
    "update-grub": LOG,
    "update-initramfs": LOG,
}


def install(folder: Path) -> Path:
    """Write the stand-ins into ``folder`` (made executable); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in FAKES.items():
        path = folder / name
        path.write_text("#!/bin/sh\nset -eu\n" + body.strip() + "\n", encoding="utf-8")
        os.chmod(path, 0o755)
    return folder
