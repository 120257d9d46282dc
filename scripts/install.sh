#!/usr/bin/env bash
# Installs weir as a systemd service:
#   binary  -> /usr/local/bin/weir
#   unit    -> /etc/systemd/system/weir.service
#   config  -> /etc/weir/weir.yaml (from conf/weir.yaml with production paths; kept if present)
#   docs    -> /usr/local/share/doc/weir/README.md
#   user    -> weir (system user, no login); /run/weir, /var/lib/weir, /var/log/weir via the unit
#
# Usage: sudo scripts/install.sh              build (release) and install
#        sudo scripts/install.sh --uninstall  remove binary, unit and user (keeps /etc/weir)
#        sudo scripts/install.sh --uninstall --purge   also remove /etc/weir, /var/lib/weir, /var/log/weir
#        scripts/install.sh --root DIR        install the files under DIR only (no user, no systemctl)
set -euo pipefail
cd "$(dirname "$0")/.."

root=""
mode=install
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --uninstall) mode=uninstall; shift ;;
    --purge) purge=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
live=$([ -z "$root" ] && echo 1 || echo 0)

if [ "$mode" = uninstall ]; then
  if [ "$live" = 1 ] && command -v systemctl >/dev/null; then
    systemctl disable --now weir.service 2>/dev/null || true
  fi
  rm -f "$root/usr/local/bin/weir" "$root/etc/systemd/system/weir.service"
  rm -rf "$root/usr/local/share/doc/weir"
  if [ "$purge" = 1 ]; then
    rm -rf "$root/etc/weir" "$root/var/lib/weir" "$root/var/log/weir"
  fi
  if [ "$live" = 1 ]; then
    command -v systemctl >/dev/null && systemctl daemon-reload || true
    id weir >/dev/null 2>&1 && userdel weir || true
  fi
  echo "weir uninstalled"
  exit 0
fi

if [ ! -x target/release/weir ] || [ -n "$(find src Cargo.toml -newer target/release/weir 2>/dev/null | head -1)" ]; then
  cargo build --release --bin weir
fi
install -D -m 0755 target/release/weir "$root/usr/local/bin/weir"
install -D -m 0644 systemd/weir.service "$root/etc/systemd/system/weir.service"
install -D -m 0644 README.md "$root/usr/local/share/doc/weir/README.md"
if [ ! -f "$root/etc/weir/weir.yaml" ]; then
  install -d -m 0755 "$root/etc/weir"
  sed -e 's#pid_file: .*#pid_file: /run/weir/weir.pid#' \
      -e 's#upgrade_sock: .*#upgrade_sock: /run/weir/upgrade.sock\n  error_log: /var/log/weir/error.log#' \
      conf/weir.yaml > "$root/etc/weir/weir.yaml"
  chmod 0644 "$root/etc/weir/weir.yaml"
else
  echo "keeping the existing $root/etc/weir/weir.yaml"
fi
"$root/usr/local/bin/weir" check -c "$root/etc/weir/weir.yaml"

if [ "$live" = 1 ]; then
  id weir >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/weir --shell /usr/sbin/nologin weir
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed. Start with: systemctl enable --now weir"
  else
    echo "installed (systemd is not running here: start weir with 'weir -c /etc/weir/weir.yaml')"
  fi
else
  echo "installed under $root"
fi
