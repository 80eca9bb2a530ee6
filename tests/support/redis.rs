//! Debian's redis-server in a test machine, set up as berth's installer sets it up:
//! a Unix socket open to all (the ACL decides), an `aclfile`, no TCP port; run as
//! `redis`, its data in the machine's own `/run/redis`.

use super::machine::Machine;

/// Redis's socket inside the machine (berth's default).
pub const SOCKET: &str = "/run/redis/redis-server.sock";

/// Starts redis-server inside the machine and waits for its socket.
pub fn start(machine: &Machine) {
    let conf = "port 0\nunixsocket /run/redis/redis-server.sock\nunixsocketperm 777\naclfile /etc/redis/users.acl\n\
                dir /run/redis\nappendonly no\nmaxmemory 256mb\nmaxmemory-policy allkeys-lru\ndaemonize yes\npidfile /run/redis/redis-server.pid\n\
                logfile /var/log/redis/redis-server.log\n";
    std::fs::write(machine.path("/etc/redis/berth-test.conf"), conf).unwrap();
    let script = "set -e; mkdir -p /run/redis /var/log/redis; chown redis:redis /run/redis /var/log/redis; \
        test -e /etc/redis/users.acl || { touch /etc/redis/users.acl; chown redis:redis /etc/redis/users.acl; }; \
        setpriv --reuid=redis --regid=redis --init-groups -- /usr/bin/redis-server /etc/redis/berth-test.conf; \
        for i in $(seq 100); do test -S /run/redis/redis-server.sock && exit 0; sleep 0.1; done; \
        cat /var/log/redis/redis-server.log >&2; exit 1";
    let out = machine.run("/bin/sh", &["-c", script]);
    assert!(out.status.success(), "redis-server did not start: {}", String::from_utf8_lossy(&out.stderr));
}

/// Stops redis-server (SIGTERM: it saves its data, as systemd's stop does) and starts it again.
pub fn restart(machine: &Machine) {
    let stop = "kill $(cat /run/redis/redis-server.pid); \
        for i in $(seq 100); do test -S /run/redis/redis-server.sock || exit 0; sleep 0.1; done; exit 1";
    assert!(machine.run("/bin/sh", &["-c", stop]).status.success(), "redis-server did not stop");
    start(machine);
}
