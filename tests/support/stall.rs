//! A stalling TCP proxy inside a test machine: a server that answers nothing for a
//! while, then normally.
//!
//! It listens on 127.0.0.1:`port` of the machine and passes each connection on to
//! 127.0.0.1:`upstream` there, byte for byte (TLS goes through untouched), but not
//! before `hold` has passed since the first connection arrived. Whatever a client
//! asks in that time waits, so the stall is certain: nothing comes back sooner.
//! Put in front of pebble it is a CA that takes `hold` to answer (pebble builds its
//! URLs from the request's Host, so every later request comes through here too).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::machine::Machine;

pub struct Stall {
    pub port: u16,
    /// When the first connection arrived.
    first: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

/// The calling thread joins the network namespace at `ns` (for good: a thread of its own).
fn join(ns: &Path) {
    let file = std::fs::File::open(ns).unwrap_or_else(|e| panic!("{}: {e}", ns.display()));
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
}

impl Stall {
    pub fn start(machine: &Machine, port: u16, upstream: u16, hold: Duration) -> Stall {
        let ns = machine.net_ns();
        let first: Arc<(Mutex<Option<Instant>>, Condvar)> = Arc::default();
        let (ready, bound) = std::sync::mpsc::channel();
        let seen = first.clone();
        std::thread::spawn(move || {
            join(&ns);
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port}: {e}"));
            ready.send(()).unwrap();
            for client in listener.incoming().map_while(Result::ok) {
                let opened = {
                    let mut first = seen.0.lock().unwrap();
                    *first.get_or_insert_with(Instant::now)
                };
                seen.1.notify_all();
                let ns = ns.clone();
                std::thread::spawn(move || pass(client, &ns, upstream, opened + hold));
            }
        });
        bound.recv().expect("the stalling proxy did not start");
        Stall { port, first }
    }

    /// When the first connection arrived, waiting for it up to `wait`.
    pub fn first_connection(&self, wait: Duration) -> Option<Instant> {
        let (first, arrived) = &*self.first;
        let guard = arrived.wait_timeout_while(first.lock().unwrap(), wait, |first| first.is_none()).unwrap().0;
        *guard
    }
}

/// Passes `client` on to the upstream port once `from` has come.
fn pass(client: TcpStream, ns: &Path, upstream: u16, from: Instant) {
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    join(ns);
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
    let (client_out, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || pump(client, server_out));
    pump(server, client_out);
    let _ = up.join();
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing side.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
