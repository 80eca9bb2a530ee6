//! A command whose output is wanted while it runs (a deploy script, for
//! `job.output`): the rules of [`super::cmd`] (argv, no shell, a clean environment,
//! stdin from /dev/null, a time limit), with stdout and stderr on one pipe handed
//! over line by line as they come.
//!
//! The command runs in a process group of its own, which a timeout kills whole: a
//! script's children (`sleep`, a build tool) do not outlive it. A child that
//! leaves something running in the background holding the pipe is not waited for
//! past a grace period after the command itself exits, and is killed with the group.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Cmd;

/// The longest line handed over; a longer one comes in pieces.
const MAX_LINE: usize = 8 << 10;
/// How long the pipe may stay open once the command exited.
const GRACE: Duration = Duration::from_secs(1);

/// Runs `cmd` (its stdin must be `None`) until it exits or `limit` passes; `line`
/// gets each line of its output (stdout and stderr interleaved, a final newline
/// kept). A timeout kills its process group and is an `io::ErrorKind::TimedOut` error.
pub fn run_streaming(cmd: &Cmd, limit: Duration, line: &mut dyn FnMut(&str)) -> io::Result<ExitStatus> {
    let (read, write) = nix::unistd::pipe().map_err(io::Error::from)?;
    let write_err = write.try_clone()?;
    let mut command = Command::new(&cmd.program);
    command.args(&cmd.args).env_clear().envs(super::cmd::CLEAN_ENV).envs(cmd.env.iter().map(|(k, v)| (k, v)));
    command.stdin(Stdio::null()).stdout(Stdio::from(write)).stderr(Stdio::from(write_err)).process_group(0);
    let mut child = command.spawn()?;
    // Our copies of the write end go with `command`, so the pipe ends with the child's.
    drop(command);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::Builder::new().name("stream-reader".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(MAX_LINE, std::fs::File::from(read));
        loop {
            let mut buf = Vec::new();
            match reader.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(buf).is_err() {
                        return;
                    }
                }
            }
        }
    })?;
    let deadline = Instant::now() + limit;
    let mut exited: Option<(ExitStatus, Instant)> = None;
    loop {
        let now = Instant::now();
        if exited.is_none() && now >= deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not finish within {} s", cmd.program, limit.as_secs()),
            ));
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(bytes) => line(&String::from_utf8_lossy(&bytes)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if exited.is_none() {
            if let Some(status) = child.try_wait()? {
                exited = Some((status, Instant::now()));
            }
        }
        if exited.is_some_and(|(_, at)| at.elapsed() > GRACE) {
            break;
        }
    }
    let status = match exited {
        Some((status, _)) => status,
        None => child.wait()?,
    };
    // What it left running in its group goes with it.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
    Ok(status)
}

/// A command's exit, as a message says it: `exit status 3`, `signal 9`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_as_they_are_printed_and_a_timeout_kills_the_group() {
        let mut lines = Vec::new();
        let cmd = Cmd::new("/bin/sh").args(["-c", "echo one; echo two >&2; printf three; exit 3"]);
        let status = run_streaming(&cmd, Duration::from_secs(5), &mut |l| lines.push(l.to_owned())).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(lines, ["one\n", "two\n", "three"]);

        let started = Instant::now();
        let cmd = Cmd::new("/bin/sh").args(["-c", "echo start; sleep 30 & sleep 30; echo never"]);
        let mut seen = Vec::new();
        let err = run_streaming(&cmd, Duration::from_millis(300), &mut |l| seen.push(l.to_owned())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(seen, ["start\n"]);
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

        let cmd = Cmd::new("/bin/sh").args(["-c", "sleep 30 & echo left"]);
        let started = Instant::now();
        assert!(run_streaming(&cmd, Duration::from_secs(20), &mut |_| {}).unwrap().success());
        assert!(started.elapsed() < Duration::from_secs(5), "a background child is not waited for");
        let env = run_streaming(&Cmd::new("/usr/bin/env"), Duration::from_secs(5), &mut |l| {
            assert!(l.starts_with("PATH=") || l.starts_with("LC_ALL="), "{l}")
        });
        assert!(env.unwrap().success());
    }
}
