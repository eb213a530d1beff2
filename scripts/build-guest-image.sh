#!/bin/sh
# Build the small Debian guest image the end-to-end tests boot (no GPU, software emulation).
#
# debootstrap (minbase, bookworm) from the mirror apt is configured with, a user with a
# password, DHCP on every en* NIC through systemd-networkd, an initrd that mounts a virtio
# disk, packed without loop devices into a compressed qcow2. The kernel and initrd are put
# beside it for direct kernel boot. The result is cached under
# ${DBC_ACCEPT_CACHE:-~/.cache/dbc-accept}/guest-<hash of this script and the password>/
# and rebuilt only when either changes. Prints shell assignments (eval-able) on stdout:
#   DBC_CI_IMAGE=... DBC_CI_KERNEL=... DBC_CI_INITRD=... DBC_CI_CMDLINE=...
# Environment: DBC_CI_GUEST_PASSWORD (default: dbc-ci; it is a throw-away test image).
# With --cached-only nothing is built: exit status 3 when the image is not in the cache.
set -eu

SUITE=bookworm
PACKAGES=systemd-sysv,udev,dbus,openssh-server,python3,linux-image-amd64,initramfs-tools,iproute2,ifupdown,netbase,procps,kmod,qemu-guest-agent
USER_NAME=dbc
PASSWORD=${DBC_CI_GUEST_PASSWORD:-dbc-ci}
DISK_SIZE=2G
CMDLINE="root=/dev/vda rw console=ttyS0 net.ifnames=1"

log() { echo "build-guest-image: $*" >&2; }

script_hash() {
    { cat "$0"; printf '%s' "$PASSWORD"; } | sha256sum | cut -c1-16
}

# The first Debian mirror apt is configured with (deb822 or one-line format).
apt_mirror() {
    m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
    [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | grep -v security | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}

print_result() {
    echo "DBC_CI_IMAGE=$1/base.qcow2"
    echo "DBC_CI_KERNEL=$1/vmlinuz"
    echo "DBC_CI_INITRD=$1/initrd.img"
    echo "DBC_CI_CMDLINE='$CMDLINE'"
}

configure_root() {
    root=$1
    echo dbc-guest > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 dbc-guest\n' > "$root/etc/hosts"
    echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$root/etc/fstab"
    chroot "$root" useradd -m -s /bin/bash "$USER_NAME"
    # chpasswd reads stdin: the password is not on any command line.
    printf '%s:%s\nroot:%s\n' "$USER_NAME" "$PASSWORD" "$PASSWORD" | chroot "$root" chpasswd
    mkdir -p "$root/etc/ssh/sshd_config.d"
    printf 'PasswordAuthentication yes\nPermitRootLogin yes\nUseDNS no\n' \
        > "$root/etc/ssh/sshd_config.d/10-dbc-ci.conf"
    mkdir -p "$root/etc/systemd/network"
    # The client id follows the NIC's MAC: clones of one image must not share a DHCP lease.
    printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nClientIdentifier=mac\n' \
        > "$root/etc/systemd/network/20-en.network"
    # A fresh machine id at each boot (an empty file), not one shared by every clone.
    : > "$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # Nothing waits for the network: sshd listens on all addresses anyway.
    ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
    # Only what a virtio disk needs: a small initrd that builds fast.
    sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
    printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >> "$root/etc/initramfs-tools/modules"
    chroot "$root" update-initramfs -u -k all >/dev/null 2>&1
    chroot "$root" apt-get clean
    rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin
}

build() {
    out=$1
    work="$out.tmp.$$"
    rm -rf "$work"
    mkdir -p "$work/root"
    trap 'rm -rf "$work"' EXIT INT TERM
    mirror=$(apt_mirror)
    log "debootstrap $SUITE from $mirror (about 2 minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/root" "$mirror" \
        > "$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
    configure_root "$work/root"
    cp "$(ls "$work"/root/boot/vmlinuz-* | tail -n1)" "$work/vmlinuz"
    cp "$(ls "$work"/root/boot/initrd.img-* | tail -n1)" "$work/initrd.img"
    log "packing $DISK_SIZE ext4 into qcow2"
    truncate -s "$DISK_SIZE" "$work/raw.img"
    mkfs.ext4 -q -F -L root -d "$work/root" "$work/raw.img"
    qemu-img convert -c -O qcow2 "$work/raw.img" "$work/base.qcow2"
    rm -rf "$work/raw.img" "$work/root"
    chmod 0644 "$work/base.qcow2" "$work/vmlinuz" "$work/initrd.img"
    rm -rf "$out"
    mv "$work" "$out"
    trap - EXIT INT TERM
}

main() {
    [ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, chroot)"; exit 1; }
    cache=${DBC_ACCEPT_CACHE:-$HOME/.cache/dbc-accept}
    out="$cache/guest-$(script_hash)"
    mkdir -p "$cache"
    exec 9>"$cache/.build.lock"
    flock 9
    if [ -f "$out/base.qcow2" ]; then
        log "cached: $out"
    elif [ "${1:-}" = --cached-only ]; then
        log "not built yet: $out (run $0)"
        exit 3
    else
        start=$(date +%s)
        build "$out"
        log "built $out in $(( $(date +%s) - start )) s"
        # Images of earlier versions of this script are never used again.
        for old in "$cache"/guest-*; do
            [ "$old" = "$out" ] || rm -rf "$old"
        done
    fi
    print_result "$out"
}

main "$@"
