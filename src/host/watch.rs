//! What the port and process checks of a monitoring policy look at: which ports
//! have a socket bound (TCP: listening), from `/proc/net/{tcp,tcp6,udp,udp6}`, and
//! which processes run under a name, from one walk of `/proc`. Each file is read
//! once per reading, into buffers kept between readings; no traffic is sent and no
//! program is run.
//!
//! Trust: everything here is what the kernel reports, but a process chooses its own
//! `comm` (prctl) and argv[0], so any user can run a process that calls itself
//! `nginx`. That makes `process:nginx` true (or keeps it true while the real nginx
//! is down), and nothing else: a name is only ever compared, never used as a path,
//! and the walk opens nothing but `/proc/PID/stat` and `/proc/PID/cmdline` (files
//! of the kernel's, not links). The same holds for a port: any user may bind an
//! unprivileged port, which makes that port's check say "responding".

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::model::monitor::{PortProtocol, ProcessName};

/// The longest argv[0] looked at, in bytes (a longer one is not compared).
const ARGV0_MAX: usize = 4096;

/// Reads the port and process facts; its buffers live between readings.
pub struct Watcher {
    /// The proc filesystem (`/proc`; tests may point elsewhere).
    proc_dir: PathBuf,
    text: String,
    tcp: PortSet,
    udp: PortSet,
    argv: Vec<u8>,
}

/// A set of ports, one bit each (8 KiB).
struct PortSet(Vec<u64>);

impl PortSet {
    fn new() -> PortSet {
        PortSet(vec![0; 65536 / 64])
    }

    fn clear(&mut self) {
        self.0.iter_mut().for_each(|w| *w = 0);
    }

    fn insert(&mut self, port: u16) {
        self.0[usize::from(port) / 64] |= 1 << (port % 64);
    }

    fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }
}

impl Watcher {
    pub fn new(proc_dir: &Path) -> Watcher {
        Watcher {
            proc_dir: proc_dir.to_owned(),
            text: String::new(),
            tcp: PortSet::new(),
            udp: PortSet::new(),
            argv: vec![0; ARGV0_MAX],
        }
    }

    /// Re-reads the socket tables of the protocols asked for (one read of each file).
    pub fn read_ports(&mut self, tcp: bool, udp: bool) {
        self.tcp.clear();
        self.udp.clear();
        if tcp {
            for file in ["net/tcp", "net/tcp6"] {
                read_table(&self.proc_dir.join(file), &mut self.text, &mut self.tcp, Some("0A"));
            }
        }
        if udp {
            for file in ["net/udp", "net/udp6"] {
                read_table(&self.proc_dir.join(file), &mut self.text, &mut self.udp, None);
            }
        }
    }

    /// Whether a socket of `protocol` is bound to `port` (TCP: listening), as of the
    /// last [`Watcher::read_ports`].
    pub fn listening(&self, protocol: PortProtocol, port: u16) -> bool {
        match protocol {
            PortProtocol::Tcp => self.tcp.contains(port),
            PortProtocol::Udp => self.udp.contains(port),
        }
    }

    /// Counts, per name of `names`, the processes that are not zombies and whose
    /// `comm` or argv[0]'s basename is that name (one walk of `/proc`); `counts` is
    /// resized to `names`.
    pub fn count_processes(&mut self, names: &[ProcessName], counts: &mut Vec<u32>) {
        counts.clear();
        counts.resize(names.len(), 0);
        if names.is_empty() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.proc_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            let dir = self.proc_dir.join(pid);
            // Gone between the listing and the read: not running.
            if read_capped(&dir.join("stat"), &mut self.text).is_err() {
                continue;
            }
            let Some((comm, state)) = comm_and_state(&self.text) else { continue };
            if state == 'Z' || state == 'X' || state == 'x' {
                continue;
            }
            let argv0 = read_argv0(&dir.join("cmdline"), &mut self.argv);
            let base = argv0.map(|a| a.rsplit(|&b| b == b'/').next().unwrap_or(a));
            for (i, wanted) in names.iter().enumerate() {
                let wanted = wanted.as_str();
                if comm == wanted || base.is_some_and(|b| b == wanted.as_bytes()) {
                    counts[i] += 1;
                }
            }
        }
    }
}

/// Marks the local ports of a `/proc/net/{tcp,udp}*` table (in `state` only, if given).
fn read_table(path: &Path, text: &mut String, ports: &mut PortSet, state: Option<&str>) {
    if read_capped(path, text).is_err() {
        return;
    }
    for line in text.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(st)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state.is_some_and(|wanted| st != wanted) {
            continue;
        }
        let Some((_, port)) = local.rsplit_once(':') else { continue };
        if let Ok(port) = u16::from_str_radix(port, 16) {
            ports.insert(port);
        }
    }
}

/// Reads a file of /proc into `text` (kept allocated between readings).
fn read_capped(path: &Path, text: &mut String) -> io::Result<()> {
    text.clear();
    File::open(path)?.read_to_string(text)?;
    Ok(())
}

/// `comm` and the state letter of a `/proc/PID/stat` line: `1234 (comm) S ...`. The
/// comm may hold spaces and parentheses, so it ends at the line's last `)`.
fn comm_and_state(stat: &str) -> Option<(&str, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

/// argv[0] of `/proc/PID/cmdline`: up to its first NUL, `None` when empty (a kernel
/// thread) or longer than [`ARGV0_MAX`].
fn read_argv0<'a>(path: &Path, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut file = File::open(path).ok()?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if buf[..filled].contains(&0) {
                    break;
                }
            }
            Err(_) => return None,
        }
    }
    let end = buf[..filled].iter().position(|&b| b == 0).or((filled < buf.len()).then_some(filled))?;
    (end > 0).then(|| &buf[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("net")).unwrap();
        let header =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        std::fs::write(
            d.join("net/tcp"),
            format!(
                "{header}   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n   1: 0100007F:1F90 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 2\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("net/tcp6"),
            format!("{header}   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 3\n"),
        )
        .unwrap();
        std::fs::write(d.join("net/udp"), format!("{header}   0: 00000000:0035 00000000:0000 07 0 0 0 0 0 4\n"))
            .unwrap();
        let procs: [(&str, &str, &[u8]); 5] = [
            ("1", "1 (nginx) S 0", b"nginx: master process /usr/sbin/nginx\0"),
            ("2", "2 (nginx) S 1", b"/usr/sbin/nginx\0-g\0"),
            ("3", "3 (nginx) Z 1", b""),
            ("4", "4 (a) b) (c) R 1", b"/opt/x/php-fpm8.3\0"),
            ("5", "5 (kworker/0:1) I 2", b""),
        ];
        for (pid, stat, cmdline) in procs {
            std::fs::create_dir_all(d.join(pid)).unwrap();
            std::fs::write(d.join(pid).join("stat"), stat).unwrap();
            std::fs::write(d.join(pid).join("cmdline"), cmdline).unwrap();
        }
        dir
    }

    #[test]
    fn ports_are_listening_tcp_sockets_and_bound_udp_ones() {
        let proc_dir = fake_proc();
        let mut watcher = Watcher::new(proc_dir.path());
        watcher.read_ports(true, true);
        assert!(watcher.listening(PortProtocol::Tcp, 80));
        assert!(watcher.listening(PortProtocol::Tcp, 443));
        assert!(!watcher.listening(PortProtocol::Tcp, 8080), "an established connection is not listening");
        assert!(watcher.listening(PortProtocol::Udp, 53));
        assert!(!watcher.listening(PortProtocol::Udp, 80));
        watcher.read_ports(false, true);
        assert!(!watcher.listening(PortProtocol::Tcp, 80), "TCP not read: nothing");
    }

    #[test]
    fn processes_by_comm_or_argv0_without_zombies() {
        let proc_dir = fake_proc();
        let mut watcher = Watcher::new(proc_dir.path());
        let names: Vec<ProcessName> =
            ["nginx", "php-fpm8.3", "kworker", "sbin"].iter().map(|n| ProcessName::parse("p", n).unwrap()).collect();
        let mut counts = Vec::new();
        watcher.count_processes(&names[..2], &mut counts);
        assert_eq!(counts, [2, 1]);
        watcher.count_processes(&names[2..], &mut counts);
        assert_eq!(counts, [0, 0]);
    }

    #[test]
    fn a_stat_line_with_parentheses_in_comm() {
        assert_eq!(comm_and_state("4 (a) b) (c) R 1 2"), Some(("a) b) (c", 'R')));
        assert_eq!(comm_and_state("garbage"), None);
    }
}
