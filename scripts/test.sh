#!/usr/bin/env bash
# The test command of the README: installs what it needs, then runs every test.
#   FUZZ_SECONDS=N   seconds per fuzz target (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/msrv.sh

# Each fuzz target starts from the seeds committed beside it (fuzz/corpus/<target>/seed-*;
# .gitignore keeps nothing else there). Checked first, so that a target without seeds
# stops the run at once rather than after the lab.
for target in $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^iwf-fuzz$'); do
    if ! compgen -G "fuzz/corpus/$target/seed-*" >/dev/null; then
        echo "test.sh: fuzz target $target has no committed seed in fuzz/corpus/$target/seed-*" >&2
        exit 1
    fi
done

echo "== unit, property and integration tests"
cargo test --workspace --locked

echo "== the Debian package: built with cargo deb, installed with dpkg, checked, purged"
scripts/package.sh --test

echo "== load-tool captures (iwf-peer pcap) replayed into the lab with tcpreplay, counters checked"
scripts/trex/validate.sh

echo "== the peer baseline (Kamailio + Kannel, scripts/baseline.sh): MESSAGEs answered, one IMDN back each"
PEER_BIN=${CARGO_TARGET_DIR:-target}/debug/iwf-peer scripts/baseline.sh check

echo "== BENCHMARKS.md's summary agrees with its history and targets; the plots draw (from fixtures)"
python3 scripts/bench_report.py --check
plots=$(mktemp -d)
python3 scripts/bench_plots.py tests/data/bench "$plots" fixture
for f in throughput latency scaling rss; do
    python3 -c "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])" "$plots/$f.svg"
done
rm -rf "$plots"

echo "== benches compile and run once (figures come from scripts/bench.sh)"
cargo bench --locked --bench tag --bench sip --bench smpp --bench sms --bench cpim_imdn --bench pipeline --bench lanes --bench selection --bench correlation --bench store --bench tcp --bench memory --bench scaling -- --test

fuzz_seconds=${FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ]; then
    echo "== fuzz targets, ${fuzz_seconds}s each (AddressSanitizer)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    for target in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
        mkdir -p "$work/$target"
        echo "-- fuzz $target"
        if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
            -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -print_final_stats=0 >"$work/$target.log" 2>&1); then
            # The crashing input is kept in fuzz/artifacts/<target>/; show why it crashed.
            # (A build error matches none of these: the tail below shows it; `|| true`
            # keeps set -e from ending the script before it.)
            grep -E "panicked|ERROR|SUMMARY|Test unit written" "$work/$target.log" | head -n 20 || true
            tail -n 20 "$work/$target.log"
            echo "test.sh: fuzz target $target failed" >&2
            exit 1
        fi
        grep -E "^Done" "$work/$target.log" || true
    done
fi
echo "test.sh: all passed"
