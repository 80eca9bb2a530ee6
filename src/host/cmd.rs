//! Commands on the host: always an argument vector (never a shell), a clean
//! environment (`PATH` and `LC_ALL=C` alone), stdin from /dev/null, output captured and bounded, and a time limit after which
//! the command is killed. Secrets never go in argv: a command that needs one gets
//! it on stdin or in a 0600 file.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The only variables a command gets besides the ones its caller names. Nothing of
/// berth's own environment passes: not `NOTIFY_SOCKET`/`WATCHDOG_*` (under systemd,
/// `php-fpm -t` sent its own notifications to berth's unit), not `RUST_LOG`, not
/// whatever the operator's shell had.
pub(crate) const CLEAN_ENV: [(&str, &str); 2] = [("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), ("LC_ALL", "C")];

/// What a bounded run keeps of each of stdout and stderr; the rest is read and dropped.
const MAX_CAPTURE: u64 = 16 << 20;

/// Runs `program` with `args` (no shell), `LC_ALL=C`, stdin from /dev/null, stdout and
/// stderr captured (each up to 16 MiB), and kills it when it has not exited after `limit`
/// (an `io::ErrorKind::TimedOut` error).
///
/// The pipes are drained on their own threads so a chatty child cannot block on a full
/// pipe. On a timeout they are left behind: a grandchild holding the pipes open must not
/// keep the caller waiting; they end when the pipes close.
pub fn run_bounded(program: &Path, args: &[&str], limit: Duration) -> io::Result<Output> {
    run_bounded_with_input(program, args, &[], None, limit)
}

/// [`run_bounded`] with extra environment and `input` written to the command's stdin
/// (then closed): the way secrets reach a command, never argv.
pub fn run_bounded_with_input(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    input: Option<&[u8]>,
    limit: Duration,
) -> io::Result<Output> {
    let mut command = Command::new(program);
    let stdin = if input.is_some() { Stdio::piped() } else { Stdio::null() };
    command.args(args).env_clear().envs(CLEAN_ENV).envs(env.iter().map(|(k, v)| (k, v)));
    command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_retrying(&mut command)?;
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        use std::io::Write;
        // Small inputs (a line of chpasswd) fit the pipe buffer; the pipe closes on drop.
        if let Err(err) = pipe.write_all(input) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    }
    let readers = reader(child.stdout.take()).and_then(|out| Ok((out, reader(child.stderr.take())?)));
    let (stdout, stderr) = match readers {
        Ok(readers) => readers,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            // Kill can only fail if it already exited; reap it either way.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not finish within {} s", program.display(), limit.as_secs_f32()),
            ));
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
    };
    let join = |handle: Option<JoinHandle<Vec<u8>>>| handle.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output { status, stdout: join(stdout), stderr: join(stderr) })
}

/// `Command::spawn`, retried briefly on ETXTBSY: a binary that was just written (a package
/// being installed, a test script) can be "busy" while some other fork still holds it open.
fn spawn_retrying(command: &mut Command) -> io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(err) if err.kind() == io::ErrorKind::ExecutableFileBusy && tries < 5 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10 * tries));
            }
            other => return other,
        }
    }
}

/// A thread reading `pipe` to its end.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> io::Result<Option<JoinHandle<Vec<u8>>>> {
    pipe.map(|pipe| thread::Builder::new().name("pipe-reader".into()).spawn(move || drain(pipe))).transpose()
}

fn drain(mut pipe: impl Read) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = pipe.by_ref().take(MAX_CAPTURE).read_to_end(&mut kept);
    let _ = io::copy(&mut pipe, &mut io::sink());
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_file(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn notify_socket_leaked_to_commands_regression() {
        // The test process has HOME, CARGO_* and more; a command sees none of it.
        let out = run_bounded_with_input(
            Path::new("/usr/bin/env"),
            &[],
            &[("MYSQL_PWD".into(), "named".into())],
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let mut seen: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        seen.sort();
        assert_eq!(seen, ["LC_ALL=C", "MYSQL_PWD=named", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    }

    #[test]
    fn bounded_run_kills_a_hung_binary() {
        let root = tempfile::tempdir().unwrap();
        let script = root.path().join("hang");
        // The grandchild `sleep` keeps the pipes open after the shell is killed.
        write_file(&script, "#!/bin/sh\necho started\nsleep 3\n", 0o755);
        let started = Instant::now();
        let err = run_bounded(&script, &[], Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

        let out =
            run_bounded(Path::new("/bin/sh"), &["-c", "echo $LC_ALL; echo err >&2; exit 3"], Duration::from_secs(5))
                .unwrap();
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"C\n"[..], &b"err\n"[..]));
        assert_eq!(out.status.code(), Some(3));
    }
}
