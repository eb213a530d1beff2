#!/bin/sh
# Build the node in miniature: a Debian 11 "bullseye" machine set up as the DBC install guide
# sets up a compute node, to run the suite against (docs/node-in-miniature.md).
#
# Two stages, each cached under ${DBC_ACCEPT_CACHE:-~/.cache/dbc-accept}:
#  - node-base-<hash>/root.tar: debootstrap from the Debian mirror apt is configured with,
#    systemd, sshd, the guide's packages (libvirt, qemu, xfsprogs, ...), what host-check.sh
#    builds with (python3-venv, python3-dev, libvirt-dev, gcc), and a wheelhouse of the
#    project's dependencies for the node's python3 (3.9) so that the node installs offline.
#    Rebuilt when the package list, the base recipe or pyproject.toml change.
#  - node-<hash>/{configured,fresh}/: two variants of the same packages, each a raw ext4 root
#    disk, a raw second disk for /data, the kernel, the initrd and the kernel command line
#    (what GRUB would boot: the variant's /etc/default/grub). `configured` has every step of
#    the guide a machine can do; `fresh` has the packages and nothing configured (its /data
#    disk is blank). Rebuilt when this script or the guest image change.
# Nothing is mounted and no loop device is used (mkfs.ext4 -d, mkfs.xfs -p).
# Needs the guest image (scripts/build-guest-image.sh): it is the node's /data/ubuntu.qcow2.
# Prints shell assignments on stdout: DBC_NODE_DIR=... DBC_NODE_KEY=...
# With --cached-only nothing is built: exit status 3 when the images are not in the cache.
set -eu

SUITE=bullseye
BASE_PACKAGES=systemd-sysv,udev,dbus,openssh-server,python3,linux-image-amd64,initramfs-tools,iproute2,ifupdown,netbase,procps,kmod,ca-certificates
# The guide's (一)/(二) packages as far as a machine without a desktop takes them (no
# virt-manager, vim, expect), what the checks' commands need, and host-check.sh's build needs.
GUIDE_PACKAGES="qemu-system-x86 qemu-utils libvirt-clients libvirt-daemon-system bridge-utils ovmf cpu-checker xfsprogs pciutils dnsmasq-base iptables python3-venv python3-dev libvirt-dev pkg-config gcc"
STAND_IN_IDS=8086:10d3,8086:293e  # the stand-in GPU: an e1000e and an ICH9 audio function
ROOT_SIZE=4G
DATA_SIZE=400G  # sparse: more than the 350 GiB check_env asks for
BOOT_ARGS="root=/dev/vda rw console=ttyS0"
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

log() { echo "build-node-image: $*" >&2; }

apt_mirror() {
    m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
    [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | grep -v security | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}

base_hash() {
    { sed -n '/^build_base()/,/^}/p; /^wheelhouse()/,/^}/p' "$0"; echo "$SUITE $BASE_PACKAGES $GUIDE_PACKAGES";
      sed -n '/^dependencies = \[/,/^\]/p; /^libvirt = /p' "$REPO/pyproject.toml"; } \
        | sha256sum | cut -c1-16
}

build_base() {
    # Resumable: a failed build keeps $work, and the next run goes on after the last stage
    # that ended (debootstrap, packages); the lock keeps two builds apart.
    out=$1
    work="$out.tmp"
    r=$work/root
    mkdir -p "$work"
    if [ ! -f "$work/debootstrap.done" ]; then
        rm -rf "$r"; mkdir -p "$r"
        mirror=$(apt_mirror)
        log "debootstrap $SUITE from $mirror (about 4 minutes)"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$r" "$mirror" \
            > "$work/log" 2>&1 || { tail -n 20 "$work/log" >&2; exit 1; }
        touch "$work/debootstrap.done"
    fi
    if [ ! -f "$work/packages.done" ]; then
        # Nothing starts in the chroot while packages install.
        printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
        chmod 0755 "$r/usr/sbin/policy-rc.d"
        log "installing the guide's packages (about 2 minutes)"
        # shellcheck disable=SC2086
        chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends $GUIDE_PACKAGES >> "$work/log" 2>&1 \
            || { tail -n 20 "$work/log" >&2; exit 1; }
        rm -f "$r/usr/sbin/policy-rc.d"
        touch "$work/packages.done"
    fi
    log "wheelhouse for the node's python3 (3.9)"
    wheelhouse "$r/opt/dbc-accept-wheels" >> "$work/log" 2>&1 \
        || { tail -n 20 "$work/log" >&2; exit 1; }
    chroot "$r" apt-get clean
    rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/"*.bin
    tar -C "$r" -cf "$work/root.tar" .
    rm -rf "$r"
    rm -rf "$out"; mv "$work" "$out"
}

# The project's dependencies for the node's python3, so that host-check.sh installs offline
# there. This machine's pip downloads the wheels for CPython 3.9 (it trusts what this
# machine trusts); the node's python3 builds libvirt-python from its source against the
# node's libvirt, offline, and then installs the whole set offline to prove it complete.
wheelhouse() {
    w=$1
    rm -rf "$w"; mkdir -p "$w"
    py=$REPO/.venv/bin/python
    [ -x "$py" ] || py=python3
    reqs=$("$py" - "$REPO/pyproject.toml" <<'PYEOF'
import sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib
from packaging.requirements import Requirement
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
env = {"python_version": "3.9", "python_full_version": "3.9.2"}
for text in p["dependencies"] + p["optional-dependencies"]["libvirt"]:
    r = Requirement(text)
    if r.marker is None or r.marker.evaluate(env):
        r.marker = None
        print(r)
PYEOF
)
    binary=$(echo "$reqs" | grep -v '^libvirt-python')
    # pip evaluates markers of dependencies for its own Python: those for 3.9 are named here
    # shellcheck disable=SC2086
    "$py" -m pip download -q -d "$w" --only-binary=:all: --python-version 3.9 \
        --implementation cp --abi cp39 --platform manylinux_2_31_x86_64 \
        --platform manylinux2014_x86_64 $(echo "$binary" | tr '\n' ' ' | sed "s/ / /g") \
        exceptiongroup tomli importlib-metadata importlib-resources zipp typing-extensions \
        pip setuptools wheel
    "$py" -m pip download -q -d "$w" --no-deps --no-binary=:all: \
        "$(echo "$reqs" | grep '^libvirt-python')"
    echo "$reqs" > "$r/tmp/requirements.txt"
    chroot "$r" sh -c 'python3 -m venv /tmp/wv && W=/opt/dbc-accept-wheels &&
        /tmp/wv/bin/pip install -q --no-index --find-links $W --upgrade pip setuptools wheel &&
        /tmp/wv/bin/pip wheel -q --no-index --find-links $W -w $W --no-deps $W/libvirt?python-*.tar.gz &&
        rm -f $W/libvirt?python-*.tar.gz &&
        /tmp/wv/bin/pip install -q --no-index --find-links $W -r /tmp/requirements.txt'
    rm -rf "$r/tmp/wv" "$r/tmp/requirements.txt"
}

# --- the variants ---------------------------------------------------------------------------

common_setup() {
    r=$1 key=$2
    echo dbc-node > "$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 dbc-node\n' > "$r/etc/hosts"
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$r/etc/fstab"
    mkdir -p "$r/root/.ssh"; chmod 0700 "$r/root/.ssh"
    cp "$key.pub" "$r/root/.ssh/authorized_keys"; chmod 0600 "$r/root/.ssh/authorized_keys"
    chroot "$r" useradd -m -s /bin/bash dbc
    # The node's own NIC (virtio) by DHCP; the stand-in's e1000e is never configured.
    mkdir -p "$r/etc/systemd/network"
    printf '[Match]\nDriver=virtio_net\n\n[Network]\nDHCP=yes\n' > "$r/etc/systemd/network/20-node.network"
    chroot "$r" systemctl enable systemd-networkd.service >/dev/null 2>&1
    ln -sf /dev/null "$r/etc/systemd/system/systemd-networkd-wait-online.service"
    : > "$r/etc/machine-id"
    rm -f "$r/var/lib/dbus/machine-id"
    # What a Debian installer leaves: GRUB's defaults (the launcher boots what it says).
    mkdir -p "$r/etc/default"
    printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' \
        > "$r/etc/default/grub"
    sed -i 's/^MODULES=.*/MODULES=list/' "$r/etc/initramfs-tools/initramfs.conf"
    printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >> "$r/etc/initramfs-tools/modules"
    # The guest image's kernel and initrd, for the nested test VM (direct kernel boot).
    mkdir -p "$r/var/lib/dbc-accept"
    echo "root=/dev/vda rw console=ttyS0 net.ifnames=1" > "$r/var/lib/dbc-accept/guest-cmdline"
}

configure_node() {
    r=$1
    # (三) vfio: the stand-in's ids, IOMMU on, the blacklist; vfio-pci before the drivers.
    printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash intel_iommu=on kvm.ignore_msrs=1 vfio-pci.ids=%s"\nGRUB_CMDLINE_LINUX="quiet splash intel_iommu=on iommu=pt rd.driver.pre=vfio-pci"\n' \
        "$STAND_IN_IDS" > "$r/etc/default/grub"
    printf 'blacklist snd_hda_intel\nblacklist amd76x_edac\nblacklist vga16fb\nblacklist nouveau\nblacklist rivafb\nblacklist nvidiafb\nblacklist rivatv\n' \
        >> "$r/etc/modprobe.d/blacklist.conf"
    printf 'options vfio-pci ids=%s\nsoftdep e1000e pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n' \
        "$STAND_IN_IDS" > "$r/etc/modprobe.d/vfio.conf"
    printf 'vfio\nvfio_iommu_type1\nvfio_pci\n' >> "$r/etc/initramfs-tools/modules"
    # (三) forwarding and bridge netfilter, persisted (applied at boot by systemd-sysctl)
    echo "net.ipv4.ip_forward=1" >> "$r/etc/sysctl.conf"
    echo br_netfilter > "$r/etc/modules-load.d/br_netfilter.conf"
    printf 'net.bridge.bridge-nf-call-iptables=1\nnet.bridge.bridge-nf-call-ip6tables=1\n' \
        > "$r/etc/sysctl.d/99-bridge-nf.conf"
    # (二) XFS /data with project quotas
    mkdir -p "$r/data"; chmod 0777 "$r/data"
    echo "/dev/vdb /data     xfs pquota 0 1" >> "$r/etc/fstab"
    # (四) libvirtd listens on TCP without auth, sockets masked, the service enabled
    c=$r/etc/libvirt/libvirtd.conf
    sed -i 's/^#listen_tls = 0/listen_tls = 0/; s/^#listen_tcp = 1/listen_tcp = 1/; s/^#auth_tcp = "sasl"/auth_tcp = "none"/' "$c"
    grep -q '^listen_tcp = 1' "$c" && grep -q '^auth_tcp = "none"' "$c" \
        || { log "libvirtd.conf lacks the guide's commented lines"; exit 1; }
    # libvirt 7's unit reads LIBVIRTD_ARGS (Ubuntu 20.04's read libvirtd_opts)
    echo 'LIBVIRTD_ARGS="-l"' > "$r/etc/default/libvirtd"
    for s in libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd-tls.socket libvirtd-tcp.socket; do
        ln -sf /dev/null "$r/etc/systemd/system/$s"
    done
    chroot "$r" systemctl enable libvirtd.service >/dev/null 2>&1
    # The default network, started with libvirtd
    mkdir -p "$r/etc/libvirt/qemu/networks/autostart"
    [ -f "$r/etc/libvirt/qemu/networks/default.xml" ] \
        || cp "$r/usr/share/libvirt/networks/default.xml" "$r/etc/libvirt/qemu/networks/default.xml"
    ln -sf ../default.xml "$r/etc/libvirt/qemu/networks/autostart/default.xml"
    # (五) a stand-in dbc program: named dbc, run from its install folder, listening on its
    # two ports (a copy of python3 running a listener), with conf/core.conf and dat/node.dat
    d=$r/home/dbc/dbc_repo
    mkdir -p "$d/conf" "$d/dat" "$d/shell"
    cp "$r/usr/bin/python3.9" "$d/dbc"
    printf 'net_type=mainnet\nnet_listen_port=5001\nhttp_port=5002\n' > "$d/conf/core.conf"
    printf 'node_id=%s\nnode_private_key=%s\n' \
        "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" \
        "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$d/dat/node.dat"
    chmod 0600 "$d/dat/node.dat"
    cat > "$d/shell/standin.py" <<'EOF'
"""Stand-in for the dbc node program: listen on conf/core.conf's two ports, answer nothing."""
import os, select, socket
conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf", "core.conf")
ports = [int(l.split("=")[1]) for l in open(conf) if l.split("=")[0] in ("net_listen_port", "http_port")]
socks = []
for port in ports:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8); socks.append(s)
while True:
    for s in select.select(socks, [], [])[0]:
        s.accept()[0].close()
EOF
    chroot "$r" chown -R dbc:dbc /home/dbc/dbc_repo
    printf '[Unit]\nDescription=dbc compute node (stand-in)\nAfter=network.target libvirtd.service\n\n[Service]\nUser=dbc\nWorkingDirectory=/home/dbc/dbc_repo\nExecStart=/home/dbc/dbc_repo/dbc /home/dbc/dbc_repo/shell/standin.py --compute -d -n dbc-node\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n' \
        > "$r/etc/systemd/system/dbc.service"
    chroot "$r" systemctl enable dbc.service >/dev/null 2>&1
}

node_venv() {
    # The project's dependencies in a venv of the node's python3, installed offline from the
    # wheelhouse here at native speed (under emulation it takes minutes): host-check.sh uses
    # it with DBC_ACCEPT_VENV=/opt/dbc-accept-venv and only adds the project itself.
    r=$1
    mkdir -p "$r/tmp/project"
    cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/dbc_accept" "$r/tmp/project/"
    chroot "$r" sh -c 'python3 -m venv /opt/dbc-accept-venv &&
        W=/opt/dbc-accept-wheels && P=/opt/dbc-accept-venv/bin/pip &&
        $P install -q --no-index --find-links $W --upgrade pip &&
        $P install -q --no-index --find-links $W "/tmp/project[libvirt]" &&
        $P uninstall -q -y dbc-accept' >&2
    rm -rf "$r/tmp/project"
}

grub_cmdline() {
    # What update-grub puts on the kernel line: GRUB_CMDLINE_LINUX then ..._DEFAULT.
    sh -c ". '$1/etc/default/grub'; echo \"\$GRUB_CMDLINE_LINUX \$GRUB_CMDLINE_LINUX_DEFAULT\""
}

data_disk() {
    # XFS with ftype=1 holding the template, filled without mounting (a proto file).
    out=$1 guest=$2
    {
        echo "/dev/null"; echo "0 0"; echo "d--777 0 0"
        echo "ubuntu.qcow2 ---644 0 0 $guest/base.qcow2"
        echo "guest-vmlinuz ---644 0 0 $guest/vmlinuz"
        echo "guest-initrd.img ---644 0 0 $guest/initrd.img"
        echo '$'; echo '$'
    } > "$out.proto"
    truncate -s "$DATA_SIZE" "$out"
    mkfs.xfs -q -f -n ftype=1 -L data -p "$out.proto" "$out"
    rm -f "$out.proto"
}

build_variant() {
    work=$1 variant=$2 guest=$3
    r=$work/$variant.root
    mkdir -p "$r" "$work/$variant"
    tar -C "$r" -xf "$BASE/root.tar"
    common_setup "$r" "$work/node_key"
    if [ "$variant" = configured ]; then
        configure_node "$r"
        data_disk "$work/$variant/data.img" "$guest"
    else
        truncate -s "$DATA_SIZE" "$work/$variant/data.img"  # blank, as a new disk is
    fi
    node_venv "$r"
    chroot "$r" update-initramfs -u -k all >/dev/null 2>&1
    cp "$(ls "$r"/boot/vmlinuz-* | tail -n1)" "$work/$variant/vmlinuz"
    cp "$(ls "$r"/boot/initrd.img-* | tail -n1)" "$work/$variant/initrd.img"
    echo "$BOOT_ARGS $(grub_cmdline "$r")" > "$work/$variant/cmdline"
    truncate -s "$ROOT_SIZE" "$work/$variant/root.img"
    mkfs.ext4 -q -F -L root -d "$r" "$work/$variant/root.img"
    rm -rf "$r"
}

variant_hash() {
    { cat "$0"; echo "$BASE"; echo "$1"; } | sha256sum | cut -c1-16
}

main() {
    [ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, chroot)"; exit 1; }
    cache=${DBC_ACCEPT_CACHE:-$HOME/.cache/dbc-accept}
    mkdir -p "$cache"
    exec 9>"$cache/.node-build.lock"
    flock 9
    guest=$(DBC_ACCEPT_CACHE=$cache "$HERE/build-guest-image.sh" ${1:-} | sed -n "s/^DBC_CI_IMAGE=//p")
    guest=$(dirname "$guest")
    BASE="$cache/node-base-$(base_hash)"
    node="$cache/node-$(variant_hash "$guest")"
    if [ -f "$node/fresh/root.img" ]; then
        log "cached: $node"
    elif [ "${1:-}" = --cached-only ]; then
        log "not built yet: $node (run $0)"
        exit 3
    else
        start=$(date +%s)
        if [ ! -f "$BASE/root.tar" ]; then
            build_base "$BASE"
            log "base built in $(( $(date +%s) - start )) s"
            for old in "$cache"/node-base-*; do [ "$old" = "$BASE" ] || rm -rf "$old"; done
        fi
        work="$node.tmp.$$"
        rm -rf "$work"; mkdir -p "$work"
        trap 'rm -rf "$work"' EXIT INT TERM
        ssh-keygen -q -t ed25519 -N '' -C dbc-node-test -f "$work/node_key"
        build_variant "$work" configured "$guest"
        build_variant "$work" fresh "$guest"
        rm -rf "$node"; mv "$work" "$node"
        trap - EXIT INT TERM
        log "built $node in $(( $(date +%s) - start )) s"
        for old in "$cache"/node-*; do
            case "$old" in "$node"|"$BASE"|*.lock) ;; "$cache"/node-base-*) ;; *) rm -rf "$old" ;; esac
        done
    fi
    echo "DBC_NODE_DIR=$node"
    echo "DBC_NODE_KEY=$node/node_key"
}

main "$@"
