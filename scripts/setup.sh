#!/usr/bin/env bash
# Installs what iwf's build, tests and demo need on Debian 12. Idempotent; run as root
# (or with sudo). Later issues add DPDK, hugepages, sipp and tshark here.
set -euo pipefail

need_pkgs=()
for p in build-essential pkg-config ca-certificates; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install ${need_pkgs[*]} (run: sudo scripts/setup.sh)" >&2
        exit 1
    fi
    echo "setup: installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install a Rust toolchain (rustup, stable >= 1.75)" >&2
    exit 1
fi

# cargo-fuzz drives the libFuzzer targets under fuzz/ (stable toolchain + RUSTC_BOOTSTRAP).
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz (about 2 minutes)"
    cargo install --locked cargo-fuzz
fi
echo "setup: ok"
