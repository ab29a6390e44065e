#!/usr/bin/env bash
# The minimum Rust version iwf builds with, derived from the locked dependencies: the
# highest `rust-version` among the packages Cargo.lock builds for this platform
# (cargo metadata). Checks that Cargo.toml's `rust-version` and the README's
# "stable ≥ X" say that version; prints it. scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
need=$(cargo metadata --format-version 1 --locked --filter-platform "$host" | python3 -c '
import json, sys
d = json.load(sys.stdin)
def key(v):
    return tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])
best = max((p.get("rust_version") or "0" for p in d["packages"] if p["name"] != "iwf"), key=key)
who = sorted(p["name"] + " " + p["version"] for p in d["packages"] if p["name"] != "iwf" and key(p.get("rust_version") or "0") == key(best))
major, minor, _ = key(best)
print("%d.%d %s" % (major, minor, ", ".join(who)))
')
version=${need%% *}
crates=${need#* }
declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
readme=$(grep -o 'stable ≥ [0-9.]*' README.md | head -n 1 | sed 's/stable ≥ //')
status=0
if [ "$declared" != "$version" ]; then
    echo "msrv: Cargo.toml says rust-version = \"$declared\", the locked dependencies need $version ($crates)" >&2
    status=1
fi
if [ "$readme" != "$version" ]; then
    echo "msrv: the README says stable ≥ ${readme:-nothing}, the locked dependencies need $version ($crates)" >&2
    status=1
fi
[ $status -eq 0 ] && echo "msrv: Rust $version (the highest the locked dependencies ask: $crates)"
exit $status
