#!/usr/bin/env bash
# Debian's Postfix as an MMS centre's mail relay, for the lab: an instance of its own
# (config, queue and data directories under DIR; the system's Postfix is untouched)
# that listens on LISTEN and relays every message for DOMAIN to NEXT_HOP, as an
# operator's MTA in front of its MMS centre would.
#
#   postfix_relay.sh up   DIR LISTEN DOMAIN NEXT_HOP    e.g. target/lab/postfix 198.18.1.1:2525 mmsc-m.lab 198.18.1.1:2527
#   postfix_relay.sh down DIR
#
# Run it inside the namespace whose address LISTEN names (ip netns exec iwf-legacy ...).
# Its log: DIR/postfix.log. Needs root and the postfix package (scripts/setup.sh).
set -euo pipefail

die() { echo "postfix_relay: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root"
command -v postfix >/dev/null || die "postfix is not installed (apt-get install postfix; scripts/setup.sh does)"

action=${1:-}
dir=${2:-}
[ -n "$dir" ] || die "usage: postfix_relay.sh up|down DIR [LISTEN DOMAIN NEXT_HOP]"
dir=$(realpath -m "$dir")

case "$action" in
up)
    listen=${3:?LISTEN}; domain=${4:?DOMAIN}; next=${5:?NEXT_HOP}
    "$0" down "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    mkdir -p "$dir/conf" "$dir/spool" "$dir/data"
    chown postfix "$dir/data"
    # Only the services a relay uses; no chroot (the instance's paths are its own).
    cat >"$dir/conf/master.cf" <<EOF
$listen inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    next_host=${next%:*}
    next_port=${next##*:}
    cat >"$dir/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
myhostname = relay.$domain
mydestination =
inet_interfaces = ${listen%:*}
inet_protocols = ipv4
mynetworks = ${listen%.*}.0/24
relay_domains = $domain
relayhost = [$next_host]:$next_port
smtpd_recipient_restrictions = permit_mynetworks, reject
smtp_host_lookup = native
disable_dns_lookups = yes
message_size_limit = 4194304
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir
# Whatever the next hop says, relay at once: the lab's queue never waits.
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
EOF
    postfix -c "$dir/conf" check 2>&1 | grep -v "^$" >&2 || true
    postfix -c "$dir/conf" start
    ;;
down)
    [ -d "$dir/conf" ] || exit 0
    postfix -c "$dir/conf" stop 2>/dev/null || true
    ;;
*)
    die "usage: postfix_relay.sh up|down DIR [LISTEN DOMAIN NEXT_HOP]"
    ;;
esac
