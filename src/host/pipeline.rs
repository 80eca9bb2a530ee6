//! Two commands streamed into each other through berth, and commands that get a
//! secret on a descriptor of their own: what backups need and [`super::cmd`] does
//! not do.
//!
//! `tar -c` (as the site's user) into `restic backup --stdin`, `mariadb-dump` into
//! `restic backup --stdin`, `restic dump` into `tar -x` or `mariadb`: the bytes go
//! from one pipe to the other through a small buffer of berth's, so nothing is
//! staged on disk and memory stays flat whatever the size. berth sits in the middle
//! rather than joining the two pipes directly for one reason: the consumer sees the
//! end of its input only once the producer has *succeeded*. A producer that fails
//! or is killed halfway (a `tar` the user kills, a dump that loses its server)
//! gets its consumer killed before it sees EOF, so restic never commits a snapshot
//! of half a tree (restic would take EOF as the end of a complete file).
//!
//! Secrets go on extra descriptors (`--password-file /dev/fd/3`,
//! `AWS_SHARED_CREDENTIALS_FILE=/dev/fd/4`): a pipe written and closed before the
//! command starts, so they are in no argv, no environment and no file. Commands are
//! started with `posix_spawn` (nix's safe wrapper): its file actions place those
//! descriptors; every other descriptor of berth's is close-on-exec. The environment
//! is the clean one of [`super::cmd`] plus what the caller names (never a secret).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::thread::{self, JoinHandle};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::host::{Cmd, HostError};

/// What is kept of a command's stderr and of its captured stdout.
const MAX_CAPTURE: u64 = 16 << 20;
/// berth's buffer between producer and consumer.
const BUFFER: usize = 256 << 10;

/// A command to start: `cmd` (program, args, extra environment; its `stdin` secret
/// is ignored here) and secrets to place on descriptors (`(3, password)`).
pub struct Spec {
    pub cmd: Cmd,
    pub secret_fds: Vec<(i32, Vec<u8>)>,
    /// Exit codes besides 0 that count as success (`tar`'s 1: a file changed while read).
    pub ok_codes: Vec<i32>,
}

impl Spec {
    pub fn new(cmd: Cmd) -> Spec {
        Spec { cmd, secret_fds: Vec::new(), ok_codes: Vec::new() }
    }

    /// `secret` readable on descriptor `fd` of the command (3 and up).
    pub fn secret_fd(mut self, fd: i32, secret: &[u8]) -> Spec {
        self.secret_fds.push((fd, secret.to_vec()));
        self
    }

    /// Exit code `code` counts as success too.
    pub fn ok_code(mut self, code: i32) -> Spec {
        self.ok_codes.push(code);
        self
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(File, File)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(read), File::from(write)))
}

/// A started command: its pid and the thread reading its stderr.
struct Running {
    pid: Pid,
    command: String,
    stderr: Option<JoinHandle<Vec<u8>>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    ok_codes: Vec<i32>,
    reaped: bool,
}

/// How a command ended: success, or a [`HostError::Failed`] with its stderr.
struct Ended {
    ok: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Running {
    /// Kills the command and whatever it started (its process group: a shell's
    /// children would otherwise hold the pipes open).
    fn kill(&self) {
        let _ = nix::sys::signal::killpg(self.pid, Signal::SIGKILL);
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    fn wait(mut self) -> io::Result<Ended> {
        let status = loop {
            match waitpid(self.pid, None) {
                Ok(status) => break status,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.reaped = true;
        let (ok, status) = match status {
            WaitStatus::Exited(_, 0) => (true, "exit status 0".to_owned()),
            WaitStatus::Exited(_, code) if self.ok_codes.contains(&code) => (true, format!("exit status {code}")),
            WaitStatus::Exited(_, code) => (false, format!("exit status {code}")),
            WaitStatus::Signaled(_, signal, _) => (false, format!("signal {signal}")),
            other => (false, format!("{other:?}")),
        };
        let join = |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Ok(Ended { ok, status, stdout: join(self.stdout.take()), stderr: join(self.stderr.take()) })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = waitpid(self.pid, None);
        }
    }
}

impl Ended {
    fn into_result(self, command: &str) -> Result<Vec<u8>, HostError> {
        if self.ok {
            return Ok(self.stdout);
        }
        let stderr = String::from_utf8_lossy(&self.stderr);
        let stderr: String = stderr.trim().chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        Err(HostError::Failed { command: command.to_owned(), status: self.status, stderr })
    }
}

fn spawn_error(command: &str, source: impl Into<io::Error>) -> HostError {
    HostError::Spawn { command: command.to_owned(), source: source.into() }
}

/// Starts `spec` with `stdin` (or /dev/null) on 0, stdout to `stdout` or captured,
/// stderr captured, and each secret on its descriptor.
fn start(spec: &Spec, stdin: Option<OwnedFd>, stdout: Option<OwnedFd>) -> Result<Running, HostError> {
    use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    let command = spec.cmd.to_string();
    let fail = |e: nix::errno::Errno| spawn_error(&command, e);
    let cstr = |s: &str| CString::new(s).map_err(|e| spawn_error(&command, io::Error::other(e)));
    let null = || std::fs::File::open("/dev/null").map(OwnedFd::from).map_err(|e| spawn_error(&command, e));
    let stdin = match stdin {
        Some(fd) => fd,
        None => null()?,
    };
    let (out_read, out_write) = match stdout {
        Some(fd) => (None, fd),
        None => {
            let (r, w) = pipe().map_err(|e| spawn_error(&command, e))?;
            (Some(r), OwnedFd::from(w))
        }
    };
    let (err_read, err_write) = pipe().map_err(|e| spawn_error(&command, e))?;
    // Secrets: each in a pipe of its own, written and closed before the start (a
    // password is far below a pipe's 64 KiB, so the write never blocks).
    let mut secrets = Vec::new();
    for (target, secret) in &spec.secret_fds {
        let (r, mut w) = pipe().map_err(|e| spawn_error(&command, e))?;
        w.write_all(secret).map_err(|e| spawn_error(&command, e))?;
        drop(w);
        secrets.push((*target, OwnedFd::from(r)));
    }
    // Every source moved above the targets first, so no dup2 overwrites another's source.
    let high = |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 100).map_err(|e| spawn_error(&command, e));
    let mut moved = vec![(0, high(&stdin)?), (1, high(&out_write)?), (2, high(&OwnedFd::from(err_write))?)];
    for (target, fd) in &secrets {
        moved.push((*target, high(fd)?));
    }
    let mut actions = PosixSpawnFileActions::init().map_err(fail)?;
    for (target, fd) in &moved {
        actions.add_dup2(fd.as_raw_fd(), *target).map_err(fail)?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(fail)?;
    // berth (Rust) ignores SIGPIPE; its children get the default back, as std's Command does.
    let mut default = SigSet::empty();
    default.add(Signal::SIGPIPE);
    attr.set_sigdefault(&default).map_err(fail)?;
    attr.set_sigmask(&SigSet::empty()).map_err(fail)?;
    // A process group of its own, so a kill reaches what it started too.
    attr.set_pgroup(Pid::from_raw(0)).map_err(fail)?;
    let flags = PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
        | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
        | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP;
    attr.set_flags(flags).map_err(fail)?;
    let mut argv = vec![cstr(&spec.cmd.program)?];
    for arg in &spec.cmd.args {
        argv.push(cstr(arg)?);
    }
    let mut envp = Vec::new();
    for (k, v) in crate::host::cmd::CLEAN_ENV
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(spec.cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        envp.push(cstr(&format!("{k}={v}"))?);
    }
    let pid = posix_spawn(spec.cmd.program.as_str(), &actions, &attr, &argv, &envp).map_err(fail)?;
    drop((moved, stdin, out_write, secrets));
    let reader = |pipe: File| {
        thread::Builder::new().name("pipe-reader".into()).spawn(move || {
            let mut kept = Vec::new();
            let mut pipe = pipe;
            let _ = Read::by_ref(&mut pipe).take(MAX_CAPTURE).read_to_end(&mut kept);
            let _ = io::copy(&mut pipe, &mut io::sink());
            kept
        })
    };
    let mut running = Running {
        pid,
        command: command.clone(),
        stderr: None,
        stdout: None,
        ok_codes: spec.ok_codes.clone(),
        reaped: false,
    };
    running.stderr = Some(reader(err_read).map_err(|e| spawn_error(&command, e))?);
    if let Some(out) = out_read {
        running.stdout = Some(reader(out).map_err(|e| spawn_error(&command, e))?);
    }
    Ok(running)
}

/// Runs `spec` to its end (stdin from /dev/null); its stdout, or its failure.
pub fn run(spec: &Spec) -> Result<Vec<u8>, HostError> {
    let running = start(spec, None, None)?;
    let command = running.command.clone();
    running.wait().map_err(|e| spawn_error(&command, e))?.into_result(&command)
}

/// What a stream moved, and what its consumer printed.
#[derive(Debug)]
pub struct Streamed {
    pub bytes: u64,
    pub consumer_stdout: Vec<u8>,
}

/// `producer | berth | consumer`; see the module's header. Fails, with the consumer
/// killed before it saw the end of its input, when the producer fails; fails when
/// the consumer does. Either way both are reaped.
pub fn stream(producer: &Spec, consumer: &Spec) -> Result<Streamed, HostError> {
    let (from_producer, producer_out) = pipe().map_err(|e| spawn_error(&producer.cmd.to_string(), e))?;
    let (consumer_in, mut to_consumer) = pipe().map_err(|e| spawn_error(&consumer.cmd.to_string(), e))?;
    let consumer_run = start(consumer, Some(OwnedFd::from(consumer_in)), None)?;
    let producer_run = match start(producer, None, Some(OwnedFd::from(producer_out))) {
        Ok(running) => running,
        Err(e) => {
            consumer_run.kill();
            return Err(e);
        }
    };
    let mut from_producer = from_producer;
    let mut buffer = vec![0u8; BUFFER];
    let mut bytes = 0u64;
    // Copy until the producer's EOF or a consumer that stopped reading (EPIPE).
    let copied: io::Result<()> = loop {
        let n = match from_producer.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if let Err(e) = to_consumer.write_all(&buffer[..n]) {
            break Err(e);
        }
        bytes += n as u64;
    };
    if copied.is_err() {
        producer_run.kill();
    }
    drop(from_producer);
    let producer_command = producer_run.command.clone();
    let produced = producer_run.wait().map_err(|e| spawn_error(&producer_command, e))?;
    if !produced.ok || copied.is_err() {
        // The consumer must not take what it has as the whole: killed before EOF.
        consumer_run.kill();
        let consumer_command = consumer_run.command.clone();
        let consumed = consumer_run.wait().map_err(|e| spawn_error(&consumer_command, e))?;
        if copied.is_ok() {
            produced.into_result(&producer_command)?;
        }
        // The consumer stopped reading (and the producer was killed for it): its words.
        consumed.into_result(&consumer_command)?;
        return Err(HostError::Failed {
            command: consumer_command,
            status: "stopped reading".into(),
            stderr: copied.err().map(|e| e.to_string()).unwrap_or_default(),
        });
    }
    drop(to_consumer);
    let consumer_command = consumer_run.command.clone();
    let consumed = consumer_run.wait().map_err(|e| spawn_error(&consumer_command, e))?;
    Ok(Streamed { bytes, consumer_stdout: consumed.into_result(&consumer_command)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Spec {
        Spec::new(Cmd::new("/bin/sh").args(["-c", script]))
    }

    #[test]
    fn a_stream_moves_every_byte_and_a_secret_fd_reads_once() {
        let done = stream(&sh("head -c 3000000 /dev/zero"), &sh("wc -c")).unwrap();
        assert_eq!(done.bytes, 3_000_000);
        assert_eq!(String::from_utf8_lossy(&done.consumer_stdout).trim(), "3000000");
        let out = run(&sh("cat /dev/fd/3; echo; env | sort").secret_fd(3, b"s3cret")).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("s3cret\n"), "{out}");
        assert!(!out.lines().skip(1).any(|l| l.contains("s3cret")), "not in the environment: {out}");
    }

    /// A producer that fails halfway: the consumer never sees EOF (it would print
    /// "EOF seen" and succeed), it is killed, and the error is the producer's.
    #[test]
    fn a_failing_producer_gets_its_consumer_killed_before_eof() {
        let err =
            stream(&sh("head -c 100000 /dev/zero; echo broken >&2; exit 3"), &sh("cat >/dev/null; echo EOF seen"))
                .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status 3") && text.contains("broken"), "{text}");
        let err = stream(&sh("head -c 100000000 /dev/zero"), &sh("head -c 10 >/dev/null; exit 4")).unwrap_err();
        assert!(err.to_string().contains("exit status 4"), "{err}");
    }
}
