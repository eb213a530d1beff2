"""The shell functions every script of `dbc-accept fix` starts with (POSIX sh, GNU sed).

Each function looks before it changes anything, so that a second run of the script changes
nothing. A change that a later step must act on (restart libvirtd, update-grub, rebuild the
initramfs, reboot) leaves a flag under /run/dbc-accept-fix; the later step acts only on its
flag. ``DBC_FIX_ROOT`` (empty on a node) puts every path under a folder that stands for /,
for the project's own tests.
"""

from __future__ import annotations

PRELUDE = r"""set -eu
umask 022
R="${DBC_FIX_ROOT:-}"
PENDING="$R/run/dbc-accept-fix"
if [ -z "$R" ] && [ "$(id -u)" != 0 ]; then echo "run it as root: sudo sh $0" >&2; exit 1; fi
CHANGED=

say() { printf '  %s\n' "$*"; }
mark() { mkdir -p "$PENDING"; : > "$PENDING/$1"; }
ensure_file() { [ -e "$1" ] || { mkdir -p "$(dirname "$1")"; : > "$1"; }; }

# add_line FILE LINE: LINE appended to FILE unless FILE has it already
add_line() {
  ensure_file "$1"
  if ! grep -qxF -- "$2" "$1"; then printf '%s\n' "$2" >> "$1"; say "$1: added '$2'"; CHANGED=1; fi
}

# set_key FILE KEY LINE: LINE is the one setting of KEY in FILE (other settings commented out;
# one that differs from LINE only in blanks is kept)
set_key() {
  ensure_file "$1"
  pat="^[[:space:]]*$2[[:space:]]*="
  if [ "$(grep -cE "$pat" "$1" || true)" = 1 ] &&
    [ "$(grep -E "$pat" "$1" | tr -d ' \t')" = "$(printf '%s' "$3" | tr -d ' \t')" ]; then
    return 0
  fi
  sed -i -E "/$pat/s/^/#/" "$1"
  printf '%s\n' "$3" >> "$1"; say "$1: '$3'"; CHANGED=1
}

# set_sysctl KEY VALUE: now, and in /etc/sysctl.conf (read last at boot)
set_sysctl() {
  if [ "$(cat "$R/proc/sys/$(printf '%s' "$1" | tr . /)" 2>/dev/null || true)" != "$2" ]; then
    sysctl -q -w "$1=$2"; say "sysctl $1=$2"
  fi
  set_key "$R/etc/sysctl.conf" "$1" "$1 = $2"
}

# load_module NAME: loaded now, and listed in /etc/modules-load.d/NAME.conf
load_module() {
  if ! grep -q "^$1 " "$R/proc/modules" 2>/dev/null && [ ! -d "$R/sys/module/$1" ]; then
    modprobe "$1"; say "modprobe $1"
  fi
  add_line "$R/etc/modules-load.d/$1.conf" "$1"
}

# libvirtd_conf KEY VALUE / libvirtd_arg VARIABLE: libvirtd's files; restarted later
libvirtd_conf() {
  CHANGED=; set_key "$R/etc/libvirt/libvirtd.conf" "$1" "$1 = $2"
  [ -z "$CHANGED" ] || mark libvirtd
}
libvirtd_arg() {
  CHANGED=; set_key "$R/etc/default/libvirtd" "$1" "$1=\"-l\""
  [ -z "$CHANGED" ] || mark libvirtd
}

# mask_unit UNIT: masked (-> /dev/null) and stopped
mask_unit() {
  [ "$(readlink "$R/etc/systemd/system/$1" 2>/dev/null || true)" = /dev/null ] && return 0
  systemctl mask --now "$1" >/dev/null 2>&1 || systemctl mask "$1"
  say "masked $1"; mark libvirtd
}

# restart_pending FLAG UNIT: UNIT restarted when a step changed its configuration
restart_pending() {
  if [ -e "$PENDING/$1" ]; then systemctl restart "$2"; rm -f "$PENDING/$1"; say "restarted $2"; fi
}

# enable_unit UNIT: enabled and running
enable_unit() {
  systemctl is-enabled -q "$1" 2>/dev/null || { systemctl enable "$1"; say "enabled $1"; }
  systemctl is-active -q "$1" 2>/dev/null || { systemctl start "$1"; say "started $1"; }
}

# libvirt_network NAME: defined from libvirt's shipped XML, active, autostarted
libvirt_network() {
  v="virsh -q -c qemu:///system"
  if ! $v net-info "$1" >/dev/null 2>&1; then
    $v net-define "$R/usr/share/libvirt/networks/$1.xml"; say "defined network $1"
  fi
  if ! $v net-info "$1" | grep -Eq '^Active:[[:space:]]+yes'; then
    $v net-start "$1"; say "started network $1"
  fi
  if ! $v net-info "$1" | grep -Eq '^Autostart:[[:space:]]+yes'; then
    $v net-autostart "$1"; say "network $1 starts at boot"
  fi
}

# apt_install NAME|ALTERNATIVE...: the first name installed where none of them is
apt_install() {
  want=
  for alts in "$@"; do
    found=
    for p in $(printf '%s' "$alts" | tr '|' ' '); do
      if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then found=1; fi
    done
    [ -n "$found" ] || want="$want ${alts%%|*}"
  done
  [ -n "$want" ] || return 0
  apt-get update -q || say "apt-get update failed: the package lists this system has are used"
  have=
  for p in $want; do
    if apt-cache show "$p" >/dev/null 2>&1; then have="$have $p"
    else say "$p: not in this system's package lists (left out)"; fi
  done
  [ -n "$have" ] || return 0
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y $have
}

# blacklist_module NAME: `blacklist NAME` in /etc/modprobe.d/blacklist.conf
blacklist_module() {
  CHANGED=; add_line "$R/etc/modprobe.d/blacklist.conf" "blacklist $1"
  [ -z "$CHANGED" ] || mark initramfs
}

# vfio_ids IDS: vfio-pci claims IDS at boot (modprobe.d options, loaded early from the initramfs)
vfio_ids() {
  CHANGED=
  set_key "$R/etc/modprobe.d/vfio.conf" "options[[:space:]]+vfio[-_]pci[[:space:]]+ids" \
    "options vfio-pci ids=$1"
  add_line "$R/etc/modules-load.d/vfio-pci.conf" vfio-pci
  add_line "$R/etc/initramfs-tools/modules" vfio-pci
  [ -z "$CHANGED" ] || mark initramfs
}

# vfio_before DRIVER: vfio-pci loaded before DRIVER, which holds a GPU function now
vfio_before() {
  CHANGED=; add_line "$R/etc/modprobe.d/vfio.conf" "softdep $1 pre: vfio-pci"
  [ -z "$CHANGED" ] || mark initramfs
}

# bind_vfio BDF: the function on vfio-pci now (driver_override, unbind, probe)
bind_vfio() {
  d="$R/sys/bus/pci/devices/$1"
  cur=$(readlink "$d/driver" 2>/dev/null || true); cur=${cur##*/}
  [ "$cur" != vfio-pci ] || return 0
  [ -d "$R/sys/bus/pci/drivers/vfio-pci" ] || modprobe vfio-pci
  printf 'vfio-pci\n' > "$d/driver_override"
  [ -z "$cur" ] || printf '%s\n' "$1" > "$d/driver/unbind"
  printf '%s\n' "$1" > "$R/sys/bus/pci/drivers_probe"
  say "$1: bound to vfio-pci (was: ${cur:-no driver})"
}

# grub_param PARAM [KEY]: PARAM in GRUB_CMDLINE_LINUX_DEFAULT (another KEY=... replaced)
grub_param() {
  f="$R/etc/default/grub"; ensure_file "$f"
  grep -q '^GRUB_CMDLINE_LINUX_DEFAULT=' "$f" || printf 'GRUB_CMDLINE_LINUX_DEFAULT=""\n' >> "$f"
  if ! grep -q '^GRUB_CMDLINE_LINUX_DEFAULT=".*"[[:space:]]*$' "$f"; then
    echo "$f: GRUB_CMDLINE_LINUX_DEFAULT is not in double quotes; add $1 by hand" >&2; exit 1
  fi
  cur=$(sed -n 's/^GRUB_CMDLINE_LINUX_DEFAULT="\(.*\)"[[:space:]]*$/\1/p' "$f" | tail -n 1)
  case " $cur " in *" $1 "*) return 0 ;; esac
  new=$cur
  if [ -n "${2:-}" ]; then new=$(printf '%s\n' $cur | grep -v "^$2=" | tr '\n' ' ' || true); fi
  new=$(printf '%s %s' "$new" "$1" | tr -s ' ' | sed 's/^ //; s/ $//')
  sed -i "s|^GRUB_CMDLINE_LINUX_DEFAULT=\".*\"[[:space:]]*\$|GRUB_CMDLINE_LINUX_DEFAULT=\"$new\"|" \
    "$f"
  say "$f: GRUB_CMDLINE_LINUX_DEFAULT=\"$new\""; mark grub
}
# run_or_say COMMAND...: run it, or say by hand what it would do where it is not installed
run_or_say() {
  if command -v "$1" >/dev/null 2>&1; then "$@"
  else echo "  $1 is not installed here: do by hand what it does ($*), or the change waits" >&2
  fi
}
update_grub_pending() {
  if [ -e "$PENDING/grub" ]; then run_or_say update-grub; rm -f "$PENDING/grub"; mark reboot; fi
}
update_initramfs_pending() {
  if [ -e "$PENDING/initramfs" ]; then
    run_or_say update-initramfs -u -k all; rm -f "$PENDING/initramfs"; mark reboot
  fi
}

# fstab_quota MOUNTPOINT SPEC FSTYPE: pquota among its fstab options (a line added if none)
fstab_quota() {
  f="$R/etc/fstab"; ensure_file "$f"; q='(^|,)(pquota|prjquota|pqnoenforce)(,|$)'
  if ! awk -v m="$1" '$1 !~ /^#/ && $2 == m {n=1} END {exit !n}' "$f"; then
    printf '%s %s %s defaults,pquota 0 0\n' "$2" "$1" "$3" >> "$f"; say "$f: added $2 $1"; return 0
  fi
  awk -v m="$1" -v q="$q" '$1 !~ /^#/ && $2 == m && $4 !~ q {n=1} END {exit !n}' "$f" || return 0
  awk -v m="$1" -v q="$q" '$1 !~ /^#/ && $2 == m && $4 !~ q {$4 = $4 ",pquota"} {print}' \
    "$f" > "$f.dbc-fix"
  cat "$f.dbc-fix" > "$f"; rm -f "$f.dbc-fix"; say "$f: pquota added to the options of $1"
}

# chmod_dir PATH MODE
chmod_dir() { [ "$(stat -c %a "$R$1")" = "$2" ] || { chmod "$2" "$R$1"; say "chmod $2 $1"; }; }
"""

FOOTER = r"""if [ -e "$PENDING/reboot" ]; then
  echo "reboot to finish (kernel command line, initramfs): sudo reboot"
fi
echo "dbc-accept fix: done"
"""
