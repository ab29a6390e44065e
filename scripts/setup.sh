#!/usr/bin/env bash
# Installs what iwf's build, tests and demo need on Debian 12. Idempotent; run as root
# (or with sudo). Covers the packet path too: DPDK 22.11, bindgen's libclang, the lab's
# tools (iproute2, ping, sipp, tshark, tcpreplay, swaks, postfix, promtool, python3 with smpplib
# and aiosmtpd), 2 MB hugepages on /dev/hugepages, and the peer baseline's Kamailio + Kannel
# (scripts/baseline.sh).
#
#   scripts/setup.sh          everything the tests use
#   scripts/setup.sh --demo   only what scripts/demo.sh uses (build, DPDK, the lab's
#                             namespaces, sipp, python3 with smpplib and aiosmtpd)
set -euo pipefail

demo=0
[ "${1:-}" = "--demo" ] && demo=1

need_pkgs=()
demo_pkgs=(build-essential pkg-config ca-certificates libdpdk-dev dpdk clang libclang-dev
      iproute2 iputils-ping sip-tester curl python3 python3-pip)
pkgs=(build-essential pkg-config ca-certificates
      libdpdk-dev dpdk clang libclang-dev
      iproute2 iputils-ping sip-tester tshark tcpreplay curl python3 python3-pip swaks
      # The MMS centre's mail relay in the lab (tests/peers/postfix_relay.sh).
      postfix
      # promtool checks the /metrics exposition in the lab test; systemd-analyze the unit.
      prometheus systemd
      # dpkg-shlibdeps reads the .deb's library dependencies (scripts/package.sh);
      # man-db's lexgrog checks the man pages it ships.
      dpkg-dev man-db
      # The cluster lab (scripts/lab.sh up --cluster): three JetStream nodes.
      nats-server
      # The peer baseline (scripts/baseline.sh): Kamailio (tm, xhttp, uac, ... are in
      # kamailio; http_client is in kamailio-utils-modules) and Kannel (bearerbox, smsbox).
      kamailio kamailio-utils-modules kannel util-linux)
# dpdk-testpmd (the tap ceiling in the bench) is in dpdk on some releases, dpdk-dev on others.
if apt-cache show dpdk-dev >/dev/null 2>&1; then pkgs+=(dpdk-dev); fi
[ $demo -eq 1 ] && pkgs=("${demo_pkgs[@]}")
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install ${need_pkgs[*]} (run: sudo scripts/setup.sh)" >&2
        exit 1
    fi
    echo "setup: installing ${#need_pkgs[@]} Debian packages: ${need_pkgs[*]}"
    echo "setup: apt-get update"
    apt-get update -qq
    # tshark asks whether non-root users may capture: answer no, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    # Postfix asks what kind of mail system this is: none (the lab runs its own instance).
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Debian starts a package's service on install (kamailio and kannel would listen on
    # 5060 / 13000-13013 in the root namespace): forbid that for the install with
    # policy-rc.d (exit 101 = "action not allowed"), unless one is already there.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # One line per package as it unpacks and sets up: a first run shows its progress.
    # (apt's own exit status counts: its output goes through the filter on the side.)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 "${need_pkgs[@]}" \
        > >(grep --line-buffered -E '^(Unpacking|Setting up) ' || true)
    if [ $own_policy -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi
# The baseline runs its own Kamailio and Kannel in namespace iwf-base, the lab its own
# Postfix in iwf-legacy, the metrics test only promtool: the system services stay stopped and disabled (also when they
# were installed earlier).
if [ "$(id -u)" -eq 0 ]; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now kamailio kannel postfix prometheus prometheus-node-exporter nats-server >/dev/null 2>&1 || true
    else
        for svc in kamailio kannel postfix prometheus prometheus-node-exporter nats-server; do
            if [ -x /etc/init.d/$svc ]; then
                /etc/init.d/$svc stop >/dev/null 2>&1 || true
                update-rc.d $svc disable >/dev/null 2>&1 || true
            fi
        done
    fi
fi

# Python smpplib (PyPI): the lab's SMPP test clients (tests/peers/smpp_esme.py).
if ! python3 -c "import smpplib" >/dev/null 2>&1; then
    echo "setup: installing smpplib (pip)"
    # Debian's own python3 is "externally managed" (PEP 668): allow the one package.
    python3 -m pip install --quiet smpplib 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages smpplib \
        || { echo "setup: pip install smpplib failed" >&2; exit 1; }
fi

# Python aiosmtpd (PyPI; Debian's python3-aiosmtpd serves only Debian's own python3):
# the lab's MMS centre double (tests/peers/mmsc.py).
if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
    echo "setup: installing aiosmtpd (pip)"
    python3 -m pip install --quiet aiosmtpd 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages aiosmtpd \
        || { echo "setup: pip install aiosmtpd failed" >&2; exit 1; }
fi

# Hugepages for DPDK (the lab uses 2 MB pages; iwf says so when they are missing).
if [ "$(id -u)" -eq 0 ]; then
    if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 512 ]; then
        echo 512 > /proc/sys/vm/nr_hugepages
    fi
    if ! grep -qs ' hugetlbfs ' /proc/mounts; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages
    fi
    [ -e /dev/net/tun ] || modprobe tun 2>/dev/null || echo "setup: /dev/net/tun missing (modprobe tun): the lab needs it" >&2
else
    echo "setup: not root, hugepages not checked (the DPDK lab needs: sudo scripts/setup.sh)" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install a Rust toolchain (rustup, stable >= 1.88; scripts/msrv.sh says why)" >&2
    exit 1
fi

# cargo-fuzz drives the libFuzzer targets under fuzz/ (stable toolchain + RUSTC_BOOTSTRAP).
if [ $demo -eq 0 ] && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz (about 2 minutes)"
    cargo install --locked cargo-fuzz
fi

# cargo-deb builds the Debian package (scripts/package.sh). Version 3 builds with the
# Rust iwf needs (1.85+); its LZMA is a bundled C library, no system one.
if [ $demo -eq 0 ] && ! cargo deb --version >/dev/null 2>&1; then
    echo "setup: installing cargo-deb (about 2 minutes)"
    cargo install --locked cargo-deb@^3
fi
echo "setup: ok"
