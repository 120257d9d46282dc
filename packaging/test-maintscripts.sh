#!/usr/bin/env bash
# Tests the maintainer scripts' service logic without a running systemd
# (run by .ci/run, as root). Each case runs a script in a private mount
# namespace with a tmpfs on /run, where /run/systemd/system exists when the
# case says systemd runs, and a stub `systemctl` first on PATH that logs its
# arguments (`is-active` answers as the case says). The real
# deb-systemd-invoke runs (so policy-rc.d is honoured as on a real system);
# DPKG_ROOT points it at a policy-rc.d the case chooses. deb-systemd-helper,
# adduser, getent and dpkg-statoverride are stubs too (the user and the
# folders "exist"), so nothing on this machine changes.
set -euo pipefail
cd "$(dirname "$0")/debian"
scripts=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

mkdir -p "$tmp/bin" "$tmp/root-allow/usr/sbin" "$tmp/root-deny/usr/sbin"
printf '#!/bin/sh\nexit 0\n' > "$tmp/root-allow/usr/sbin/policy-rc.d"
printf '#!/bin/sh\nexit 101\n' > "$tmp/root-deny/usr/sbin/policy-rc.d"
cat > "$tmp/bin/systemctl" <<'STUB'
#!/bin/sh
echo "systemctl $*" >> "$STUB_LOG"
for a in "$@"; do
  case "$a" in
    is-active) [ "$STUB_ACTIVE" = 1 ]; exit $? ;;
    is-enabled) echo enabled; exit 0 ;;
  esac
done
exit 0
STUB
for name in deb-systemd-helper adduser deluser; do
  printf '#!/bin/sh\necho "%s $*" >> "$STUB_LOG"\nexit 0\n' "$name" > "$tmp/bin/$name"
done
printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/getent"
printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/dpkg-statoverride"
chmod +x "$tmp"/bin/* "$tmp"/root-*/usr/sbin/policy-rc.d

# run NAME SYSTEMD(0|1) ACTIVE(0|1) POLICY(allow|deny) SCRIPT ARGS...
run() {
  local name=$1 systemd=$2 active=$3 policy=$4; shift 4
  : > "$tmp/log"
  unshare -m sh -c '
    mount -t tmpfs tmpfs /run
    if [ "$0" = 1 ]; then mkdir -p /run/systemd/system; fi
    shift
    exec "$@"' "$systemd" - \
    env PATH="$tmp/bin:$PATH" STUB_LOG="$tmp/log" STUB_ACTIVE="$active" \
        DPKG_ROOT="$tmp/root-$policy" sh "$scripts/$@" >/dev/null 2>>"$tmp/stderr"
  current=$name
}
expect() {
  if ! grep -q -- "$1" "$tmp/log"; then
    echo "FAIL $current: expected '$1' in:"; sed 's/^/    /' "$tmp/log"; failures=$((failures + 1))
  fi
}
refuse() {
  if grep -q -- "$1" "$tmp/log"; then
    echo "FAIL $current: did not expect '$1' in:"; sed 's/^/    /' "$tmp/log"; failures=$((failures + 1))
  fi
}

run "upgrade, service running" 1 1 allow postinst configure 0.1.0-1
expect "systemctl reload weir.service"; refuse " restart"; refuse " start"; refuse " stop"
run "upgrade, service stopped" 1 0 allow postinst configure 0.1.0-1
refuse " reload"; refuse " start"; refuse " restart"
run "upgrade, policy-rc.d forbids" 1 1 deny postinst configure 0.1.0-1
refuse " reload"; refuse " restart"
run "upgrade, no systemd running" 0 1 allow postinst configure 0.1.0-1
refuse "systemctl"
run "first install, systemd running" 1 0 allow postinst configure
expect "deb-systemd-helper enable weir.service"; expect "start weir.service"; refuse " reload"
run "first install, no systemd" 0 0 allow postinst configure
expect "deb-systemd-helper enable weir.service"; refuse "systemctl"
run "prerm of an upgrade keeps it running" 1 1 allow prerm upgrade 0.1.0-2
refuse " stop"
run "prerm of a removal stops it" 1 1 allow prerm remove
expect "systemctl stop weir.service"
run "postrm purge forgets the enablement" 0 0 allow postrm remove
expect "deb-systemd-helper mask weir.service"

if [ "$failures" -ne 0 ]; then
  echo "maintainer scripts: $failures failure(s)"
  exit 1
fi
echo "maintainer scripts: 9 cases ok"
