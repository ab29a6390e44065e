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
#                           two boxes, iwf-1 and iwf-2, of a cluster: first three
#                           nats-server nodes (JetStream) in namespace iwf-mgmt, which
#                           both control planes reach over a veth; each box's taps are
#                           bridged with the other's in the side's namespace
#                           (configs target/lab/cluster-iwf-{1,2}.toml: the lab's plus a
#                           [cluster] section; iwf-2's admin endpoint is 127.0.0.1:9871,
#                           its log target/lab/iwf-2.log)
#   scripts/lab.sh nats-kill N   kill -9 nats-server node N (1-3); nats-start N again
#   scripts/lab.sh box-start N   start box N (1-2) of the cluster again after it died
#
#   side       namespace    tap          peer            iwf
#   legacy     iwf-legacy   iwf-legacy0  198.18.1.1/24   198.18.1.2
#   converged  iwf-conv     iwf-conv0    198.18.2.1/24   198.18.2.2
#   --cluster  iwf-2's taps iwf-legacy1 / iwf-conv1, iwf-2 at 198.18.1.3 / 198.18.2.3;
#              in each side's namespace a bridge br0 holds both taps and the peer address
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
# The second box of `up --cluster`.
LOG2=$LAB_DIR/iwf-2.log
PIDFILE2=$LAB_DIR/iwf-2.pid
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
    local file=${1:-$PIDFILE}
    [ -f "$file" ] || return 1
    local pid
    pid=$(cat "$file")
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
    # iwf-2: its own DPDK prefix, taps, addresses, admin endpoint, store and records.
    sed -e "s/^file_prefix = \"$PREFIX\"/file_prefix = \"${PREFIX}2\"/" \
        -e 's/iface=iwf-legacy0/iface=iwf-legacy1/; s/iface=iwf-conv0/iface=iwf-conv1/' \
        -e 's#^address = "198.18.1.2/24"#address = "198.18.1.3/24"#; s#^address = "198.18.2.2/24"#address = "198.18.2.3/24"#' \
        -e 's/127.0.0.1:9870/127.0.0.1:9871/' \
        -e 's#target/lab/iwf.redb#target/lab/iwf-2.redb#; s#target/lab/records.jsonl#target/lab/records-2.jsonl#' \
        -e 's/^node = "iwf-1"/node = "iwf-2"/' "$out" >"$LAB_DIR/cluster-iwf-2.toml"
    CONFIG=$out
}

lab_down() {
    local pid
    if pid=$(iwf_pid "$PIDFILE2"); then
        say "stopping iwf-2 (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE2" "$LAB_DIR/iwf-2.redb"
    local t
    for t in iwf-legacy1 iwf-conv1; do
        if ip link show "$t" >/dev/null 2>&1; then ip link del "$t" 2>/dev/null || true; fi
    done
    PREFIX=${PREFIX}2 release_files
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
    # Its message records too: `iwf trace` in a new lab sees that lab's messages only.
    rm -f "$LAB_DIR"/records*.jsonl*
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
        start_iwf
        start_iwf "$LAB_DIR/cluster-iwf-2.toml" "$LOG2" "$PIDFILE2"
        attach_cluster_taps
        say "up: a cluster of iwf-1 and iwf-2"
        return 0
    fi
    start_iwf
    attach_taps
    say "up"
}

# Starts iwf and waits until it is ready (its taps exist then).
start_iwf() {
    local config=${1:-$CONFIG} log=${2:-$LOG} pidfile=${3:-$PIDFILE}
    say "starting $IWF_BIN run --config $config (log $log)"
    setsid "$IWF_BIN" run --config "$config" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    local ready=""
    for _ in $(seq 1 150); do
        if ! iwf_pid "$pidfile" >/dev/null; then
            echo "--- $log" >&2
            tail -n 5 "$log" >&2
            rm -f "$pidfile"
            die "iwf exited during start: $(grep -E '^iwf: | (ERROR|WARN) ' "$log" | tail -n1)"
        fi
        if grep -q 'INFO iwf[a-z:_]*: ready: ' "$log"; then ready=1; break; fi
        sleep 0.1
    done
    [ -n "$ready" ] || { lab_down; die "iwf not ready after 15 s (see $log)"; }
}

# Box N (1 or 2) of a cluster started again after it died (kill -9): what it left
# released, started with its configuration and log, its taps into their sides' bridges.
box_start() {
    local n=$1 config log pidfile prefix suffix side ns tap peer addr
    case $n in
        1) config=$LAB_DIR/cluster-iwf-1.toml log=$LOG pidfile=$PIDFILE prefix=$PREFIX suffix=0 ;;
        2) config=$LAB_DIR/cluster-iwf-2.toml log=$LOG2 pidfile=$PIDFILE2 prefix=${PREFIX}2 suffix=1 ;;
        *) die "box-start: box 1 or 2" ;;
    esac
    [ -f "$config" ] || die "box-start: no cluster is up ($config missing)"
    # A box just killed takes a moment to go (the kernel unmaps its hugepages).
    for _ in $(seq 1 100); do iwf_pid "$pidfile" >/dev/null || break; sleep 0.1; done
    if iwf_pid "$pidfile" >/dev/null; then die "box-start: box $n is running"; fi
    rm -f "$pidfile"
    PREFIX=$prefix release_files
    start_iwf "$config" "$log" "$pidfile"
    for s in "${SIDES[@]}"; do
        read -r side ns tap peer addr <<<"$s"
        local t=${tap%0}$suffix
        for _ in $(seq 1 50); do ip link show "$t" >/dev/null 2>&1 && break; sleep 0.1; done
        ip link show "$t" >/dev/null 2>&1 || die "box-start: tap $t did not appear (see $log)"
        ip link set "$t" netns "$ns"
        ip -n "$ns" link set "$t" master br0
        ip -n "$ns" link set "$t" up
    done
    say "box $n started again"
}

# The cluster's taps: both boxes' tap of a side into its namespace, bridged, the peer
# address on the bridge; then ping both boxes from each side.
attach_cluster_taps() {
    local side ns tap peer addr
    for s in "${SIDES[@]}"; do
        read -r side ns tap peer addr <<<"$s"
        local tap2=${tap%0}1
        for t in "$tap" "$tap2"; do
            ip link show "$t" >/dev/null 2>&1 || { lab_down; die "tap $t did not appear (see $LOG, $LOG2)"; }
        done
        ip netns list | grep -qw "^$ns" || ip netns add "$ns"
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip -n "$ns" link set lo up
        # A MAC of its own: a bridge otherwise takes its lowest port's, and when a box
        # dies (its tap goes) that may become the other box's tap's, which is also that
        # box's DPDK port's: frames for it would then stop at the bridge.
        local mac
        mac=$(printf '02:00:%02x:%02x:%02x:%02x' $(echo "${peer%/*}" | tr . ' '))
        ip -n "$ns" link add br0 address "$mac" type bridge
        for t in "$tap" "$tap2"; do
            ip link set "$t" netns "$ns"
            ip -n "$ns" link set "$t" master br0
            ip -n "$ns" link set "$t" up
        done
        ip -n "$ns" addr add "$peer" dev br0
        ip -n "$ns" link set br0 up
    done
    for s in "${SIDES[@]}"; do
        read -r side ns tap peer addr <<<"$s"
        for a in "$addr" "${addr%.2}.3"; do
            local ok=""
            for _ in $(seq 1 10); do
                if ip netns exec "$ns" ping -c 1 -W 1 "$a" >/dev/null 2>&1; then ok=1; break; fi
            done
            [ -n "$ok" ] || { lab_down; die "$a does not answer ping from $ns (see $LOG, $LOG2)"; }
        done
        say "$side: $ns (br0 ${peer}) -> iwf-1 $addr and iwf-2 ${addr%.2}.3 answer"
    done
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
    box-start) box_start "${2:?box 1 or 2}" ;;
    restart) lab_restart ;;
    down) lab_down; say "down" ;;
    status) lab_status ;;
    *) echo "usage: scripts/lab.sh up [--cluster]|down|status|restart|nats-kill N|nats-start N|box-start N" >&2; exit 2 ;;
esac
