#!/bin/sh
# Start virtlogd and libvirtd by hand (no systemd here) the way a DBC node runs libvirtd:
# TCP on 127.0.0.1:16509 without authentication, plus the unix socket. Idempotent: a
# libvirtd that already answers on qemu+tcp://localhost:16509/system is accepted as it is.
# Then make sure the NAT network the test VM uses (libvirt's `default`, DHCP) is active.
# Environment: DBC_CI_LIBVIRTD_CONF (config written when libvirtd must be started;
# default /etc/libvirt/libvirtd-dbc-ci.conf), DBC_CI_NETWORK (default: default).
set -eu

URI=qemu+tcp://localhost:16509/system
CONF=${DBC_CI_LIBVIRTD_CONF:-/etc/libvirt/libvirtd-dbc-ci.conf}
NETWORK=${DBC_CI_NETWORK:-default}
PIDFILE=/run/libvirtd-dbc-ci.pid

log() { echo "start-libvirtd: $*" >&2; }

answers() { virsh -q -c "$URI" version >/dev/null 2>&1; }

running() { pgrep -x "$1" >/dev/null 2>&1; }

write_config() {
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<'CFG'
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "16509"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
CFG
}

# qemu runs as root, as on DBC nodes: the images it opens need no ownership changes.
qemu_as_root() {
    f=/etc/libvirt/qemu.conf
    touch "$f"
    changed=0
    grep -q '^user = "root"' "$f" || { echo 'user = "root"' >> "$f"; changed=1; }
    grep -q '^group = "root"' "$f" || { echo 'group = "root"' >> "$f"; changed=1; }
    if [ "$changed" = 1 ] && running libvirtd; then
        log "WARNING: $f changed while libvirtd runs; it applies after a restart"
    fi
}

wait_answer() {
    i=0
    while ! answers; do
        i=$((i + 1))
        [ "$i" -le 100 ] || { log "libvirtd does not answer on $URI after 10 s"; exit 1; }
        sleep 0.1
    done
}

start_daemons() {
    running virtlogd || { virtlogd -d; log "started virtlogd"; }
    if answers; then
        log "libvirtd already answers on $URI: using it"
        return
    fi
    if running libvirtd; then
        log "a libvirtd runs but does not answer on $URI: it was started without --listen" \
            "or with another config; stop it (kill its pid) and run this script again"
        exit 1
    fi
    write_config
    libvirtd -d --listen --config "$CONF" --pid-file "$PIDFILE"
    wait_answer
    log "started libvirtd with $CONF"
}

default_network_xml() {
    cat <<'XML'
<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
XML
}

start_network() {
    if ! virsh -q -c "$URI" net-info "$NETWORK" >/dev/null 2>&1; then
        [ "$NETWORK" = default ] || { log "network $NETWORK is not defined"; exit 1; }
        tmp=$(mktemp)
        default_network_xml > "$tmp"
        virsh -q -c "$URI" net-define "$tmp" >/dev/null
        rm -f "$tmp"
        log "defined network default"
    fi
    if virsh -q -c "$URI" net-info "$NETWORK" | grep -q '^Active:.*yes'; then
        log "network $NETWORK is active"
    else
        virsh -q -c "$URI" net-start "$NETWORK" >/dev/null
        log "started network $NETWORK"
    fi
}

qemu_as_root
start_daemons
start_network
echo "LIBVIRT_URI=$URI"
