#!/bin/sh
# Start the node in miniature (scripts/build-node-image.sh) under software emulation, in the
# background, on throw-away overlays in RUN_DIR (the cached images are never written).
#
#   scripts/start-node.sh configured|fresh RUN_DIR [SSH_PORT]
#
# The machine: q35, 2 vCPUs, 2.5 GiB, an emulated Intel IOMMU with interrupt remapping, the
# node's own virtio NIC (user networking, SSH forwarded to 127.0.0.1:SSH_PORT, default 2222),
# a root disk and a /data disk, and two stand-in GPUs: each a slot behind its own PCIe root
# port with two functions, an e1000e (8086:10d3) as the GPU and an ICH9 audio function
# (8086:293e) beside it, as a GPU's VGA and audio functions sit. The kernel line is the one
# GRUB would build from the image's /etc/default/grub (RUN_DIR/cmdline; edit it and start
# again on the same RUN_DIR to "reboot" with another one); the initrd is RUN_DIR/initrd.img
# when there is one (the node's own, copied out after update-initramfs), else the image's.
# The node's NIC is restricted: SSH comes in, nothing goes out of this machine.
# In RUN_DIR: qemu.pid, serial.log (the console), monitor.sock (qemu's human monitor).
# Stop it: kill "$(cat RUN_DIR/qemu.pid)". Log in: ssh -i "$DBC_NODE_KEY" -p PORT root@127.0.0.1
set -eu

variant=${1:?usage: $0 configured|fresh RUN_DIR [SSH_PORT]}
run=${2:?usage: $0 configured|fresh RUN_DIR [SSH_PORT]}
port=${3:-2222}
case "$variant" in configured|fresh) ;; *) echo "start-node: variant $variant: use configured or fresh" >&2; exit 2 ;; esac
[ -n "${DBC_NODE_DIR:-}" ] || eval "$(cd "$(dirname "$0")" && ./build-node-image.sh --cached-only)"
img=$DBC_NODE_DIR/$variant
mkdir -p "$run"
[ -f "$run/root.qcow2" ] || qemu-img create -q -f qcow2 -b "$img/root.img" -F raw "$run/root.qcow2"
[ -f "$run/data.qcow2" ] || qemu-img create -q -f qcow2 -b "$img/data.img" -F raw "$run/data.qcow2"
[ -f "$run/cmdline" ] || cp "$img/cmdline" "$run/cmdline"
rm -f "$run/qemu.pid" "$run/monitor.sock"
initrd=$img/initrd.img
[ -f "$run/initrd.img" ] && initrd=$run/initrd.img

# Under emulation on a loaded machine the kernel's timer check through the remapped IO-APIC
# can miss its window and panic; the check is skipped (the timer itself works).
EMULATION_ARGS=no_timer_check

stand_in() {  # a two-function slot behind root port $1
    printf -- '-device pcie-root-port,id=rp%s,chassis=%s,slot=%s ' "$1" "$1" "$1"
    printf -- '-netdev user,id=sn%s,restrict=on ' "$1"
    printf -- '-device e1000e,bus=rp%s,addr=0.0,multifunction=on,netdev=sn%s ' "$1" "$1"
    printf -- '-device ich9-intel-hda,bus=rp%s,addr=0.1 ' "$1"
}

# shellcheck disable=SC2046
qemu-system-x86_64 -accel tcg -machine q35 -cpu max,vendor=GenuineIntel,-svm -m 2560 -smp 2 \
    -device intel-iommu,intremap=on \
    -kernel "$img/vmlinuz" -initrd "$initrd" -append "$(cat "$run/cmdline") $EMULATION_ARGS" \
    -drive "file=$run/root.qcow2,if=virtio,format=qcow2" \
    -drive "file=$run/data.qcow2,if=virtio,format=qcow2" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    $(stand_in 1) $(stand_in 2) \
    -display none -serial "file:$run/serial.log" \
    -monitor "unix:$run/monitor.sock,server,nowait" \
    -daemonize -pidfile "$run/qemu.pid"
echo "start-node: $variant node started (pid $(cat "$run/qemu.pid")), ssh -p $port root@127.0.0.1" >&2
