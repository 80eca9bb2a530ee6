#!/usr/bin/env bash
# Builds (or reuses) the root filesystem that tests/systemd.rs boots with
# systemd-nspawn: Debian 12 with systemd and the web stack baked in, since the
# booted system has loopback only. Cached under target/nspawn, keyed by the package
# list and this script, so a change to either builds a fresh one. Prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."

suite=bookworm
packages=(
  systemd systemd-sysv dbus libpam-systemd
  nginx apache2 php-fpm mariadb-server redis-server nftables unattended-upgrades
  ca-certificates curl procps iproute2 openssl passwd
)
key=$( { printf '%s\n' "$suite" "${packages[@]}"; cat "$0"; } | sha256sum | cut -c1-16)
cache=target/nspawn
root=$cache/rootfs-$key
if [ -f "$root/.complete" ]; then
  echo "$PWD/$root"
  exit 0
fi

# The host's own Debian mirror (this machine's apt sources), so the build needs no
# other network than the package registry.
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1)
security=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep security | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
security=${security:-http://deb.debian.org/debian-security}

rm -rf "$cache"/rootfs-* "$cache"/build.*
mkdir -p "$cache"
build=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$build"' EXIT
start=$(date +%s)
include=$(IFS=,; echo "${packages[*]}")
# The booted system has no network: apt gets an empty source list, so the
# installer's `apt-get update` and its install of the (already installed) stack run
# for real and find everything in place. /etc/hosts as the Debian installer writes it.
mmdebstrap --quiet --variant=minbase --include="$include" \
  --customize-hook='rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*; : > "$1"/etc/apt/sources.list' \
  --customize-hook='echo berth-test > "$1"/etc/hostname' \
  --customize-hook='printf "127.0.0.1\tlocalhost\n127.0.1.1\tberth-test\n::1\tlocalhost ip6-localhost ip6-loopback\n" > "$1"/etc/hosts' \
  --customize-hook='rm -f "$1"/etc/machine-id; : > "$1"/etc/machine-id' \
  "$suite" "$build/root" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2
touch "$build/root/.complete"
mv "$build/root" "$root"
echo "built $root in $(( $(date +%s) - start ))s ($(du -sh "$root" | cut -f1))" >&2
echo "$PWD/$root"
