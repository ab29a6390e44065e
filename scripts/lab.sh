#!/usr/bin/env bash
# The lab (README "The lab"): iwf on two net_tap ports, the kernel side of each tap moved into
# its own network namespace where the peers run.
#
#   scripts/lab.sh up       build if needed, start iwf, wire the namespaces, wait for ping
#   scripts/lab.sh down     stop iwf (SIGTERM), remove namespaces, taps, hugepage files, the store
#   scripts/lab.sh status   what is up
#   scripts/lab.sh restart  after iwf died (kill -9): start it again, taps back into the
#                           existing namespaces (the peers there keep running)
#   scripts/lab.sh up --cluster
#                           the same iwf as node iwf-1 of a cluster: first three
#                           nats-server nodes (JetStream) in namespace iwf-mgmt, which
#                           iwf's control plane reaches over a veth (config: the lab's
#                           plus a [cluster] section, target/lab/cluster-iwf-1.toml)
#   scripts/lab.sh nats-kill N   kill -9 nats-server node N (1-3); nats-start N again
#
#   side       namespace    tap          peer            iwf
#   legacy     iwf-legacy   iwf-legacy0  198.18.1.1/24   198.18.1.2
#   converged  iwf-conv     iwf-conv0    198.18.2.1/24   198.18.2.2
#   management iwf-mgmt     veth iwf-mgmt0 (root, 198.18.3.1/24) <-> mgmt0 (198.18.3.2/24):
#              nats-server n1..n3 on 198.18.3.2, clients :4222-4224, routes :6222-6224,
#              monitoring :8222-8224 (--cluster only)
#
# Environment: IWF_CONFIG (default config/lab.toml), IWF_BIN (default target/debug/iwf,
# started as `$IWF_BIN run --config`), IWF_NO_BUILD=1 (do not run cargo), CARGO_TARGET_DIR.
# Logs: target/lab/iwf.log. Every command is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${IWF_CONFIG:-config/lab.toml}
TARGET=${CARGO_TARGET_DIR:-target}
IWF_BIN=${IWF_BIN:-$TARGET/debug/iwf}
LAB_DIR=target/lab
LOG=$LAB_DIR/iwf.log
PIDFILE=$LAB_DIR/iwf.pid
# side namespace tap peer-address/len iwf-address
SIDES=(
    "legacy iwf-legacy iwf-legacy0 198.18.1.1/24 198.18.1.2"
    "converged iwf-conv iwf-conv0 198.18.2.1/24 198.18.2.2"
)

MGMT_NS=iwf-mgmt
MGMT_ADDR=198.18.3.2
NATS_DIR=$LAB_DIR/nats

die() { echo "lab: $*" >&2; exit 1; }
say() { echo "lab: $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, taps, hugepages): sudo scripts/lab.sh ${1:-up}"
command -v ip >/dev/null || die "the ip command is missing: apt-get install iproute2 (scripts/setup.sh does)"
[ -f "$CONFIG" ] || die "no configuration at $CONFIG"

PREFIX=$(sed -n 's/^[[:space:]]*file_prefix[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONFIG" | head -n1)
[ -n "$PREFIX" ] || die "$CONFIG has no eal.file_prefix"
HUGEPAGES=$(sed -n 's/^[[:space:]]*hugepages[[:space:]]*=[[:space:]]*\(true\|false\).*/\1/p' "$CONFIG" | head -n1)

iwf_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ensure_hugepages() {
    [ "${HUGEPAGES:-true}" = "true" ] || return 0
    local want=512 have
    have=$(cat /proc/sys/vm/nr_hugepages)
    if [ "$have" -lt "$want" ]; then
        echo "$want" > /proc/sys/vm/nr_hugepages
        have=$(cat /proc/sys/vm/nr_hugepages)
        [ "$have" -gt 0 ] || die "could not reserve hugepages (echo $want > /proc/sys/vm/nr_hugepages gave $have); set eal.hugepages = false in $CONFIG"
    fi
    if ! grep -qs ' hugetlbfs ' /proc/mounts; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages || die "cannot mount hugetlbfs on /dev/hugepages"
    fi
}

release_files() {
    local mnt
    for mnt in $(awk '$3 == "hugetlbfs" { print $2 }' /proc/mounts); do
        rm -f "$mnt/${PREFIX}map_"*
    done
    rm -rf "/var/run/dpdk/$PREFIX"
}

# nats-server node $1 (1-3) of the lab's JetStream cluster, started in iwf-mgmt.
nats_start() {
    local i=$1
    mkdir -p "$NATS_DIR/n$i"
    cat >"$NATS_DIR/n$i.conf" <<EOF
server_name: n$i
listen: $MGMT_ADDR:$((4221 + i))
http: $MGMT_ADDR:$((8221 + i))
jetstream { store_dir: "$(pwd)/$NATS_DIR/n$i" }
cluster {
  name: iwf-lab
  listen: $MGMT_ADDR:$((6221 + i))
  routes: [ nats-route://$MGMT_ADDR:6222, nats-route://$MGMT_ADDR:6223, nats-route://$MGMT_ADDR:6224 ]
}
EOF
    ip netns exec "$MGMT_NS" setsid nats-server -c "$NATS_DIR/n$i.conf" >>"$NATS_DIR/n$i.log" 2>&1 </dev/null &
    echo $! >"$NATS_DIR/n$i.pid"
}

# The management namespace and the three nodes; waits for JetStream's meta leader.
nats_up() {
    command -v nats-server >/dev/null || die "nats-server missing: apt-get install nats-server (scripts/setup.sh does)"
    command -v curl >/dev/null || die "curl missing (scripts/setup.sh installs it)"
    nats_down
    ip netns add "$MGMT_NS"
    ip link add iwf-mgmt0 type veth peer name mgmt0
    ip link set mgmt0 netns "$MGMT_NS"
    ip addr add 198.18.3.1/24 dev iwf-mgmt0
    ip link set iwf-mgmt0 up
    ip -n "$MGMT_NS" link set lo up
    ip -n "$MGMT_NS" addr add "$MGMT_ADDR/24" dev mgmt0
    ip -n "$MGMT_NS" link set mgmt0 up
    mkdir -p "$NATS_DIR"
    local i
    for i in 1 2 3; do nats_start "$i"; done
    for _ in $(seq 1 100); do
        if ip netns exec "$MGMT_NS" curl -s --max-time 1 "http://$MGMT_ADDR:8222/jsz" 2>/dev/null | grep -q '"leader"'; then
            say "nats: n1-n3 up in $MGMT_NS, JetStream has a meta leader"
            return 0
        fi
        sleep 0.2
    done
    die "nats: no JetStream meta leader after 20 s (see $NATS_DIR/n*.log)"
}

nats_down() {
    local f
    for f in "$NATS_DIR"/n*.pid; do
        [ -f "$f" ] || continue
        kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
    for f in "$NATS_DIR"/n*.pid; do
        [ -f "$f" ] || continue
        for _ in $(seq 1 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    if ip netns list | grep -qw "^$MGMT_NS"; then ip netns del "$MGMT_NS"; fi
    if ip link show iwf-mgmt0 >/dev/null 2>&1; then ip link del iwf-mgmt0 2>/dev/null || true; fi
    rm -rf "$NATS_DIR"
}

# The lab's configuration plus this box's [cluster] section.
cluster_config() {
    local out=$LAB_DIR/cluster-iwf-1.toml
    cp "$CONFIG" "$out"
    cat >>"$out" <<EOF

# Added by scripts/lab.sh up --cluster: node iwf-1 of the lab's NATS cluster.
[cluster]
node = "iwf-1"
servers = ["nats://$MGMT_ADDR:4222", "nats://$MGMT_ADDR:4223", "nats://$MGMT_ADDR:4224"]
replicas = 3
heartbeat_s = 1
EOF
    CONFIG=$out
}

lab_down() {
    local pid
    if pid=$(iwf_pid); then
        say "stopping iwf (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "iwf did not stop within 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$PIDFILE"
    # The lab's durable store (config/lab.toml [control] store): a new lab starts empty
    # (`restart` keeps it: that is what it is for).
    rm -f "$LAB_DIR/iwf.redb"
    local side ns tap rest
    for s in "${SIDES[@]}"; do
        read -r side ns tap rest <<<"$s"
        if ip netns list | grep -qw "^$ns"; then
            ip netns del "$ns"
        fi
        if ip link show "$tap" >/dev/null 2>&1; then
            ip link del "$tap" 2>/dev/null || true
        fi
    done
    release_files
    nats_down
}

lab_up() {
    if pid=$(iwf_pid); then
        say "iwf already running (pid $pid)"
        lab_status
        return 0
    fi
    # Leftovers of a crashed run would make the taps or namespaces collide.
    lab_down >/dev/null
    mkdir -p "$LAB_DIR"
    if [ -z "${IWF_NO_BUILD:-}" ]; then
        command -v cargo >/dev/null || die "cargo not found and IWF_NO_BUILD unset"
        say "building"
        cargo build --quiet --bin iwf --bin iwf-peer
    fi
    [ -x "$IWF_BIN" ] || die "no iwf binary at $IWF_BIN (build it, or set IWF_BIN)"
    # The admin endpoint's token (config/lab.toml [control] admin_token_file): POST
    # /-/reload needs `Authorization: Bearer $(cat target/lab/admin.token)`.
    [ -s "$LAB_DIR/admin.token" ] || "$IWF_BIN" keygen --out "$LAB_DIR/admin.token" 2>/dev/null \
        || die "cannot write $LAB_DIR/admin.token"
    ensure_hugepages
    if [ "${CLUSTER:-}" = 1 ]; then
        nats_up
        cluster_config
    fi
    start_iwf
    attach_taps
    say "up"
}

# Starts iwf and waits until it is ready (its taps exist then).
start_iwf() {
    say "starting $IWF_BIN run --config $CONFIG (log $LOG)"
    setsid "$IWF_BIN" run --config "$CONFIG" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local ready=""
    for _ in $(seq 1 150); do
        if ! iwf_pid >/dev/null; then
            echo "--- $LOG" >&2
            tail -n 5 "$LOG" >&2
            rm -f "$PIDFILE"
            die "iwf exited during start: $(grep -E '^iwf: | (ERROR|WARN) ' "$LOG" | tail -n1)"
        fi
        if grep -q 'INFO iwf[a-z:_]*: ready: ' "$LOG"; then ready=1; break; fi
        sleep 0.1
    done
    [ -n "$ready" ] || { lab_down; die "iwf not ready after 15 s (see $LOG)"; }
}

# Moves iwf's taps into the namespaces (made if missing) and checks ping both ways.
attach_taps() {
    local side ns tap peer addr
    for s in "${SIDES[@]}"; do
        read -r side ns tap peer addr <<<"$s"
        ip link show "$tap" >/dev/null 2>&1 || { lab_down; die "tap $tap did not appear (see $LOG)"; }
        ip netns list | grep -qw "^$ns" || ip netns add "$ns"
        ip link set "$tap" netns "$ns"
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$peer" dev "$tap"
        ip -n "$ns" link set "$tap" up
    done
    for s in "${SIDES[@]}"; do
        read -r side ns tap peer addr <<<"$s"
        local ok=""
        for _ in $(seq 1 10); do
            if ip netns exec "$ns" ping -c 1 -W 1 "$addr" >/dev/null 2>&1; then ok=1; break; fi
        done
        [ -n "$ok" ] || { lab_down; die "iwf does not answer ping at $addr from $ns (see $LOG)"; }
        say "$side: $ns ($tap ${peer}) -> iwf $addr answers"
    done
}

# After iwf died (kill -9, crash): start it again and give its new taps to the existing
# namespaces, so the peers running there carry on (their TCP connections to iwf are gone).
lab_restart() {
    # A killed iwf may take a moment to release its memory and exit.
    for _ in $(seq 1 100); do iwf_pid >/dev/null || break; sleep 0.1; done
    if pid=$(iwf_pid); then die "iwf is running (pid $pid): restart is for after a crash"; fi
    rm -f "$PIDFILE"
    release_files
    ensure_hugepages
    local log_keep="$LOG.$(date +%s)"
    [ -f "$LOG" ] && cp "$LOG" "$log_keep"
    start_iwf
    attach_taps
    say "restarted (the log before the crash: $log_keep)"
}

lab_status() {
    local pid side ns tap peer addr
    if pid=$(iwf_pid); then say "iwf running (pid $pid), log $LOG"; else say "iwf not running"; fi
    for s in "${SIDES[@]}"; do
        read -r side ns tap peer addr <<<"$s"
        if ip netns list | grep -qw "^$ns"; then
            local state="no tap"
            if ip -n "$ns" link show "$tap" >/dev/null 2>&1; then
                state="$tap $(ip -n "$ns" -br addr show "$tap" | awk '{print $2, $3}')"
                if ip netns exec "$ns" ping -c 1 -W 1 "$addr" >/dev/null 2>&1; then
                    state="$state, iwf $addr answers"
                else
                    state="$state, iwf $addr silent"
                fi
            fi
            say "$side: namespace $ns: $state"
        else
            say "$side: namespace $ns absent"
        fi
    done
    local n
    n=$(awk '$3 == "hugetlbfs" { print $2 }' /proc/mounts | while read -r m; do ls "$m" 2>/dev/null | grep -c "^${PREFIX}map_" || true; done | awk '{s+=$1} END {print s+0}')
    say "hugepage files of $PREFIX: $n; runtime dir: $([ -d "/var/run/dpdk/$PREFIX" ] && echo present || echo absent)"
    if [ -f "$LOG" ]; then
        grep -oE ': (stats|final) port=.*' "$LOG" | cut -c3- | tail -n 2 || true
    fi
}

case "${1:-}" in
    up)
        [ "${2:-}" = "--cluster" ] && CLUSTER=1
        lab_up
        ;;
    nats-kill)
        [ -f "$NATS_DIR/n${2:-0}.pid" ] || die "no nats-server node ${2:-} running"
        kill -KILL "$(cat "$NATS_DIR/n$2.pid")"
        rm -f "$NATS_DIR/n$2.pid"
        say "nats: n$2 killed (kill -9)"
        ;;
    nats-start) nats_start "${2:?node 1-3}"; say "nats: n$2 started" ;;
    restart) lab_restart ;;
    down) lab_down; say "down" ;;
    status) lab_status ;;
    *) echo "usage: scripts/lab.sh up [--cluster]|down|status|restart|nats-kill N|nats-start N" >&2; exit 2 ;;
esac
