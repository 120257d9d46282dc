#!/usr/bin/env bash
# Builds the weir Debian package with cargo-deb (metadata in Cargo.toml,
# [package.metadata.deb]). The man page, the completions and the packaged
# unit are generated first from the binary and systemd/weir.service, so they
# cannot drift from the CLI or the unit.
#
#   packaging/build-deb.sh                  release build (the real package)
#   packaging/build-deb.sh --profile deb-test [--deb-version V]
#                                           a faster build for the CI test
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
fast=
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --deb-version) extra+=(--deb-version "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
target=${CARGO_TARGET_DIR:-target}
dir=$profile
[ "$profile" = dev ] && dir=debug && fast=1
bin="$target/$dir/weir"

cargo build --profile "$profile" --bin weir >&2
gen=packaging/generated
rm -rf "$gen"
mkdir -p "$gen"
"$bin" manpage | gzip -9n > "$gen/weir.1.gz"
"$bin" completions bash > "$gen/weir.bash"
"$bin" completions zsh > "$gen/_weir"
"$bin" completions fish > "$gen/weir.fish"
sed -e 's#/usr/local/bin/weir#/usr/bin/weir#g' \
    -e 's#^Documentation=.*#Documentation=man:weir(1) file:///usr/share/doc/weir/README.md#' \
    -e 's#Installed by scripts/install.sh#Installed by the weir Debian package#' \
    systemd/weir.service > "$gen/weir.service"

cargo deb --no-build --strip ${fast:+--fast} --profile "$profile" "${extra[@]}" --output "$target/debian/" >&2
ls -t "$target"/debian/weir_*.deb | head -1
