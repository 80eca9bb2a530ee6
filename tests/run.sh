#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs
# every test. Run as root (the tests mount a tmpfs to fill a disk).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive. Each entry: a program to look for, its package.
needs=(
  "/usr/bin/mount:mount"
  "/usr/bin/dd:coreutils"
  "/usr/sbin/useradd:passwd"
  "/usr/sbin/chpasswd:passwd"
  "/usr/sbin/start-stop-daemon:dpkg"
  "/usr/sbin/nginx:nginx"
  "/usr/sbin/apache2:apache2"
  "/usr/sbin/php-fpm*:php-fpm"
  "/usr/bin/unshare:util-linux"
  "/usr/bin/nsenter:util-linux"
  "/usr/sbin/ip:iproute2"
  "/usr/bin/setpriv:util-linux"
  "/usr/bin/pgrep:procps"
  "/bin/kill:procps"
  "/usr/sbin/mariadbd:mariadb-server"
  "/usr/bin/openssl:openssl"
  "/usr/bin/curl:curl"
  "/usr/bin/wrk:wrk"
  "/usr/bin/pebble:pebble"
  "/usr/sbin/nft:nftables"
  "/usr/bin/apt-config:apt"
  "/usr/bin/timeout:coreutils"
  "/usr/bin/systemd-analyze:systemd"
  "/usr/bin/deb-systemd-helper:init-system-helpers"
  "/usr/bin/shellcheck:shellcheck"
  "/usr/bin/lintian:lintian"
  "/usr/bin/strip:binutils"
  "/usr/bin/cc:gcc"
  "/usr/bin/perl:perl"
  "/usr/bin/python3:python3"
  "/usr/lib/python3/dist-packages/requests:python3-requests"
  "/usr/bin/systemd-nspawn:systemd-container"
  "/usr/bin/mmdebstrap:mmdebstrap"
  # tests/wordpress.rs: Debian's WordPress, its default theme, and PHP's MySQL client.
  # `php` satisfies wordpress's "libapache2-mod-php | php" (mod_php stays out).
  "/usr/share/doc/php:php"
  "/usr/share/wordpress/wp-load.php:wordpress"
  "/usr/share/wordpress/wp-content/themes/twentytwentythree/style.css:wordpress-theme-twentytwentythree"
  "/usr/bin/php8.2:php8.2-cli"
  "/usr/lib/php/*/mysqli.so:php8.2-mysql"
  # tests/deploy.rs: git deploys (git as the site's user, its deploy key, sshd for ssh://).
  "/usr/bin/git:git"
  "/usr/bin/ssh-keygen:openssh-client"
  "/usr/sbin/sshd:openssh-server"
  # tests/object_cache.rs: Debian's Redis.
  "/usr/bin/redis-server:redis-server"
  # tests/backup.rs: restic, and MariaDB's dump and load tools.
  "/usr/bin/restic:restic"
  "/usr/bin/mariadb-dump:mariadb-client"
)
missing=()
for need in "${needs[@]}"; do
  compgen -G "${need%%:*}" >/dev/null || missing+=("${need#*:}")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Installed without `php`, Debian's wordpress package pulls in mod_php, which moves
# Apache to mpm_prefork; berth's Apache runs no PHP of its own (nginx passes PHP to
# each app's pool) and refuses to start with mod_php loaded: back to mpm_event,
# without mod_php (only when needed).
for mod in /etc/apache2/mods-enabled/php*.load; do
  if [ -e "$mod" ]; then a2dismod -q "$(basename "$mod" .load)"; fi
done
if [ -e /etc/apache2/mods-enabled/mpm_prefork.load ]; then
  a2dismod -q mpm_prefork && a2enmod -q mpm_event
fi

if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh: the tests need root (they mount a tmpfs); run it as root" >&2
  exit 1
fi

# tests/packaging.rs builds the .deb with cargo-deb (pinned: its output is what lintian checks).
cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
  echo "installing cargo-deb $cargo_deb_version"
  cargo install cargo-deb --locked --version "$cargo_deb_version"
fi

# tests/dev.rs drives `berth dev` with a third-party ServerPilot client from PyPI
# (pure Python, run by Debian's python3 with python3-requests, both above).
rwsp_dir=target/rwsp
if [ ! -f "$rwsp_dir/serverpilot/serverpilot.py" ]; then
  echo "installing rwsp 1.0.1 into $rwsp_dir"
  if python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip); else
    apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; pip=(/usr/bin/python3 -m pip --break-system-packages)
  fi
  "${pip[@]}" install --quiet --disable-pip-version-check --no-deps --target "$rwsp_dir" rwsp==1.0.1
fi

# tests/systemd.rs boots Debian 12 with systemd-nspawn: its root filesystem (the web
# stack baked in, cached under target/nspawn by package list) is built here, once.
start=$(date +%s)
bash tests/nspawn/rootfs.sh >/dev/null
echo "nspawn root filesystem ready in $(( $(date +%s) - start ))s"

cargo fmt --check
# No module cycle (project issue 13): the library's modules import only downward.
# tests/modules.rs reads src/ itself; cargo-modules' `dependencies --acyclic` checks
# items (a type and its constructor are a cycle there), not modules.
cargo test --locked --test modules
cargo clippy --locked --all-targets -- -D warnings
# The package's feature set (no `dev`, no `test-jobs`; Cargo.toml [package.metadata.deb]),
# so the daemon-only build never rots; tests/packaging.rs builds and installs it.
cargo clippy --locked --all-targets --no-default-features -- -D warnings

# Every unit and integration test (there are no doc tests), then the fuzz targets'
# short run (tests/fuzz.sh: one line per target and a `fuzz:` total), then one total
# line of the tests. A crash found by the fuzzer fails the command as a failed test does.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
bash tests/fuzz.sh
fuzz_status=$?
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
if [ "$status" = 0 ] && [ "$fuzz_status" != 0 ]; then status=$fuzz_status; fi
exit "$status"
