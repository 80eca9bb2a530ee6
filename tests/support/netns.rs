//! Network peers of a test machine: a network namespace of the test's own
//! (`ip netns add`, a unique name) joined to the machine by a veth pair, so real
//! packets cross the machine's firewall from outside.
//!
//! Only documentation address ranges are used (192.0.2.0/24, 198.51.100.0/24,
//! 2001:db8::/32). Dropping a peer deletes its namespace, and with it both veth ends.
//! Sockets are opened from a thread that joined the namespace (`setns` is per
//! thread), so listeners sit in the machine and connections start at the peer.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::machine::Machine;

/// How long a connection attempt may take before it counts as dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Peer {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("/usr/sbin/ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Peer {
    /// A namespace joined to `machine` by a veth pair: the machine's end gets
    /// `machine_addrs`, the peer's end `peer_addrs` (CIDR; IPv6 without DAD).
    pub fn join(machine: &Machine, machine_addrs: &[&str], peer_addrs: &[&str]) -> Peer {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{:x}{n}", std::process::id());
        let peer = Peer { name: format!("berth-t{tag}") };
        let (inside, outside) = (format!("bm{tag}"), format!("bp{tag}"));
        assert!(inside.len() <= 15, "interface names are at most 15 characters");
        ip(&["netns", "add", &peer.name]);
        ip(&["link", "add", &inside, "type", "veth", "peer", "name", &outside]);
        ip(&["link", "set", &inside, "netns", &machine.init_pid().to_string()]);
        ip(&["link", "set", &outside, "netns", &peer.name]);
        for addr in machine_addrs {
            let out = machine.run("/usr/sbin/ip", &addr_args(addr, &inside));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let up = machine.run("/usr/sbin/ip", &["link", "set", &inside, "up"]);
        assert!(up.status.success());
        for addr in peer_addrs {
            let mut args = vec!["netns", "exec", &peer.name, "/usr/sbin/ip"];
            let addr_args = addr_args(addr, &outside);
            args.extend(addr_args.iter().copied());
            ip(&args);
        }
        ip(&["netns", "exec", &peer.name, "/usr/sbin/ip", "link", "set", &outside, "up"]);
        ip(&["netns", "exec", &peer.name, "/usr/sbin/ip", "link", "set", "lo", "up"]);
        peer
    }

    fn ns(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Whether a TCP connection to `addr` is accepted, from this peer.
    pub fn connects(&self, addr: SocketAddr) -> bool {
        in_netns(&self.ns(), move || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok())
    }

    /// [`Peer::connects`] for many addresses at once (each probe in its own thread).
    pub fn connects_all(&self, addrs: &[SocketAddr]) -> Vec<bool> {
        std::thread::scope(|s| {
            let probes: Vec<_> = addrs.iter().map(|addr| s.spawn(move || self.connects(*addr))).collect();
            probes.into_iter().map(|p| p.join().unwrap()).collect()
        })
    }

    /// Sends one UDP datagram to `addr` from this peer.
    pub fn send_udp(&self, addr: SocketAddr, payload: &[u8]) {
        in_netns(&self.ns(), || {
            let bind: SocketAddr =
                if addr.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
            UdpSocket::bind(bind).unwrap().send_to(payload, addr).unwrap();
        });
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/ip").args(["netns", "del", &self.name]).status();
    }
}

fn addr_args<'a>(addr: &'a str, dev: &'a str) -> Vec<&'a str> {
    if addr.contains(':') {
        vec!["-6", "addr", "add", addr, "dev", dev, "nodad"]
    } else {
        vec!["addr", "add", addr, "dev", dev]
    }
}

/// Runs `f` on a thread that has joined the network namespace at `ns`.
pub fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(ns).unwrap_or_else(|e| panic!("{}: {e}", ns.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
            f()
        })
        .join()
        .unwrap()
    })
}

/// Listeners inside the machine: TCP on each of `tcp` and UDP on `udp`, on every
/// address (IPv4 and IPv6).
pub struct Listeners {
    _tcp: Vec<TcpListener>,
    udp: UdpSocket,
}

impl Listeners {
    pub fn start(machine: &Machine, tcp: &[u16], udp: u16) -> Listeners {
        in_netns(&machine.net_ns(), || {
            let tcp = tcp
                .iter()
                .map(|port| TcpListener::bind(("::", *port)).unwrap_or_else(|e| panic!("port {port}: {e}")))
                .collect();
            let udp = UdpSocket::bind(("::", udp)).unwrap();
            udp.set_read_timeout(Some(CONNECT_TIMEOUT)).unwrap();
            Listeners { _tcp: tcp, udp }
        })
    }

    /// The datagrams that arrive within the timeout (older ones first).
    pub fn received(&self) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = self.udp.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }
}
