#!/usr/bin/env bash
# Builds the Debian package, target/debian/iwf_<version>_amd64.deb (release build; what
# goes in it: [package.metadata.deb] in Cargo.toml). Its man pages and completions come
# from the CLI itself (`iwf assets`).
#   scripts/package.sh          build it
#   scripts/package.sh --test   then install it with dpkg, try it, and purge it (root)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo deb --version >/dev/null 2>&1 || { echo "package: cargo-deb missing (scripts/setup.sh installs it)" >&2; exit 1; }
echo "package: release build"
cargo build --release --locked --bins
rm -rf target/assets
target/release/iwf assets --out target/assets
cargo deb --no-build --locked --strip -o target/debian/
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
deb=target/debian/iwf_${version}_amd64.deb
[ -f "$deb" ] || { echo "package: $deb was not made" >&2; ls target/debian >&2; exit 1; }
echo "package: $deb ($(du -h "$deb" | cut -f1))"
[ "${1:-}" = "--test" ] || exit 0

# The package as an operator meets it: installed, asked, refused until its key exists,
# then purged without a trace. (A system iwf not from this package would be replaced.)
fail() { echo "package test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg)"
info=$(dpkg-deb --info "$deb")
echo "$info" | grep -q "Package: iwf" || fail "not an iwf package: $info"
dpkg-deb --contents "$deb" > target/debian/contents.txt
for f in ./usr/bin/iwf ./usr/bin/iwf-peer ./etc/iwf/iwf.toml ./usr/lib/systemd/system/iwf.service \
         ./usr/share/man/man1/iwf.1.gz ./usr/share/man/man1/iwf-trace.1.gz \
         ./usr/share/bash-completion/completions/iwf ./usr/share/zsh/vendor-completions/_iwf \
         ./usr/share/doc/iwf/copyright ./usr/share/doc/iwf/operations.md; do
    grep -q " $f\$" target/debian/contents.txt || fail "$f is not in the package"
done
[ "$(dpkg-deb --info "$deb" conffiles)" = "/etc/iwf/iwf.toml" ] || fail "/etc/iwf/iwf.toml is not the conffile"
dpkg -i "$deb" >/dev/null || fail "dpkg -i refused it"
trap 'dpkg --purge iwf >/dev/null 2>&1 || true' EXIT
/usr/bin/iwf --version | grep -qx "iwf $version" || fail "iwf --version: $(/usr/bin/iwf --version)"
[ -d /var/lib/iwf ] && [ -d /var/log/iwf ] || fail "/var/lib/iwf or /var/log/iwf missing"
# The shipped configuration does not load until its tag key exists, and says so.
if out=$(/usr/bin/iwf check 2>&1); then fail "iwf check passed without a key: $out"; fi
echo "$out" | grep -q "tag-key-1" || fail "iwf check does not name the missing key: $out"
/usr/bin/iwf keygen --out /etc/iwf/tag-key-1 >/dev/null
/usr/bin/iwf check >/dev/null 2>&1 || [ $? -eq 2 ] || fail "iwf check with its key: $(/usr/bin/iwf check 2>&1)"
said=$(systemd-analyze verify /usr/lib/systemd/system/iwf.service 2>&1) || fail "systemd-analyze verify: $said"
[ -z "$said" ] || fail "systemd-analyze verify: $said"
if command -v lexgrog >/dev/null; then lexgrog /usr/share/man/man1/iwf.1.gz >/dev/null || fail "iwf.1 has no NAME section"; fi
dpkg --purge iwf >/dev/null || fail "dpkg --purge failed"
trap - EXIT
for p in /usr/bin/iwf /etc/iwf /var/lib/iwf /var/log/iwf /usr/lib/systemd/system/iwf.service /usr/share/man/man1/iwf.1.gz; do
    [ ! -e "$p" ] || fail "$p left after purge"
done
dpkg -s iwf >/dev/null 2>&1 && fail "dpkg still knows iwf after purge"
echo "package test: installed, checked, purged: $deb"
