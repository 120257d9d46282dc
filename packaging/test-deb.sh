#!/usr/bin/env bash
# Tests the Debian package for real on this machine (root; run by .ci/run):
#   build the .deb (the dev profile unless WEIR_DEB_PROFILE says otherwise:
#   CI has built it already; the real package uses release); lintian passes
#   (errors and warnings fail; overrides are justified in
#   packaging/debian/lintian-overrides); dpkg -i; the installed files, user,
#   directories, owners and modes; `weir check` of the installed config;
#   `systemd-analyze verify` of the installed unit; man page and completions;
#   a newer build installed over it keeps an edited /etc/weir/weir.yaml;
#   dpkg -P leaves the file system as it found it.
# Cleans up after itself (purges the package) whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${WEIR_DEB_PROFILE:-dev}
target=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$target
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
# dpkg, waiting (up to 2 min) while another dpkg or apt holds its lock.
dpkg_() {
  local out
  for _ in $(seq 1 60); do
    if out=$(dpkg "$@" 2>&1); then echo "$out"; return 0; fi
    if ! grep -q "lock" <<<"$out"; then echo "$out" >&2; return 1; fi
    sleep 2
  done
  echo "$out" >&2
  return 1
}
step() { echo "-- $*"; }

if dpkg -s weir >/dev/null 2>&1; then
  fail "a weir package is already installed here; purge it first (dpkg -P weir)"
fi
if getent passwd weir >/dev/null; then
  fail "a weir user exists already; this test needs a machine without weir installed"
fi
work=$(mktemp -d)
cleanup() {
  if dpkg -s weir >/dev/null 2>&1; then dpkg_ -P weir >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Everything outside the usual churn, to compare after the purge.
snapshot() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /work \
      -o -path /root -o -path /var/lib/dpkg -o -path /var/cache -o -path /var/log/apt \
      -o -path /var/tmp -o -path "$target" -o -path /var/lib/apt \) -prune -o -print 2>/dev/null \
    | grep -v -e '^/var/log/dpkg.log$' -e '^/etc/\(passwd\|group\|shadow\|gshadow\|subuid\|subgid\)-\?$' \
    | sort
  ls -d /var/cache/weir 2>/dev/null || true
}

step "build ($profile profile)"
# cargo-deb replaces older builds in its output folder: keep copies.
built=$(packaging/build-deb.sh --profile "$profile" | tail -1)
cp "$built" "$work/"
deb="$work/$(basename "$built")"
built=$(packaging/build-deb.sh --profile "$profile" --deb-version 0.1.0-2 | tail -1)
cp "$built" "$work/"
newer="$work/$(basename "$built")"
[ -f "$deb" ] && [ -f "$newer" ] && [ "$deb" != "$newer" ] || fail "no .deb built"
echo "$deb"

step "lintian"
lintian --fail-on error,warning --info "$deb"

snapshot > "$work/before"
step "dpkg -i"
dpkg_ -i "$deb"
getent passwd weir >/dev/null || fail "no weir user"
[ "$(getent passwd weir | cut -d: -f7)" = /usr/sbin/nologin ] || fail "the weir user can log in"
for d in /var/lib/weir /var/log/weir /var/cache/weir; do
  [ "$(stat -c '%U:%G %a' "$d")" = "weir:weir 750" ] || fail "$d: $(stat -c '%U:%G %a' "$d")"
done
[ "$(stat -c '%U:%G %a' /etc/weir/weir.yaml)" = "root:root 644" ] || fail "config owner/mode"
grep -qx /etc/weir/weir.yaml /var/lib/dpkg/info/weir.conffiles || fail "weir.yaml is not a conffile"
for f in /usr/bin/weir /lib/systemd/system/weir.service /usr/share/man/man1/weir.1.gz \
         /usr/share/bash-completion/completions/weir /usr/share/zsh/vendor-completions/_weir \
         /usr/share/fish/vendor_completions.d/weir.fish /usr/share/doc/weir/copyright; do
  [ -e "$f" ] || fail "$f missing"
done

step "weir check of the installed config"
out=$(/usr/bin/weir check -c /etc/weir/weir.yaml 2>&1) || fail "weir check: $out"
echo "$out"
if echo "$out" | grep -qi warn; then fail "weir check warns: $out"; fi

step "systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/weir.service

step "man page and completions"
zcat /usr/share/man/man1/weir.1.gz | grep -q 'weir check' || fail "man page lacks weir check"
if command -v man >/dev/null; then
  MANPAGER=cat man -l /usr/share/man/man1/weir.1.gz 2>/dev/null | grep -q upgrade || fail "man cannot render weir.1"
fi
bash -c 'source /usr/share/bash-completion/completions/weir && COMP_WORDS=(weir che) COMP_CWORD=1 && _weir weir che weir && [[ " ${COMPREPLY[*]} " == *" check "* ]]' \
  || fail "bash completion does not complete 'weir che'"

step "upgrade keeps an edited conffile"
sed -i 's/level: info/level: debug  # edited by the operator/' /etc/weir/weir.yaml
dpkg_ -i --force-confold "$newer"
[ "$(dpkg-query -W -f '${Version}' weir)" = 0.1.0-2 ] || fail "not upgraded"
grep -q 'edited by the operator' /etc/weir/weir.yaml || fail "the edited config was replaced"
[ ! -e /etc/weir/weir.yaml.dpkg-new ] || fail "a .dpkg-new appeared for an unchanged conffile"
/usr/bin/weir check -c /etc/weir/weir.yaml >/dev/null

step "dpkg -P"
dpkg_ -P weir
! getent passwd weir >/dev/null || fail "the weir user is left"
snapshot > "$work/after"
if ! diff -u "$work/before" "$work/after"; then
  fail "the purge left the file system different (above)"
fi
echo "test-deb: ok"
