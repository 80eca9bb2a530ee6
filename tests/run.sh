#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs
# every test. Run as root (the tests mount a tmpfs to fill a disk).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive. Each entry: a command to look for, the package.
needs=(
  "mount:mount"
  "dd:coreutils"
)
missing=()
for need in "${needs[@]}"; do
  command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh: the tests need root (they mount a tmpfs); run it as root" >&2
  exit 1
fi

cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
