//! A small client of Redis's wire protocol (RESP2) over Redis's Unix socket: what
//! berth needs to manage ACL users and delete an app's keys, and no more.
//!
//! No crate: a command is an array of bulk strings, a reply one of five shapes,
//! and the socket is root's end of a local daemon. Commands carry passwords
//! (`AUTH`, `ACL SETUSER >…`), so nothing here ever prints a command: an error
//! names what was asked by its first word only, and a reply that is an error is
//! Redis's own text, which never echoes a password. Replies are bounded (a bulk
//! string of at most [`MAX_BULK`] bytes, an array of at most [`MAX_ITEMS`]), so
//! a confused or hostile server cannot make berth allocate without end.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest bulk string read (a key name or an ACL line is far smaller).
pub const MAX_BULK: usize = 16 << 20;
/// The most items in one array reply (a SCAN page of COUNT 1000 is well below).
pub const MAX_ITEMS: usize = 1 << 20;
/// How long one reply may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    /// Redis refused the command: its message (`NOPERM …`, `WRONGPASS …`).
    Error(String),
    Int(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The items of an array reply (a null array is empty).
    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items.clone(),
            _ => Vec::new(),
        }
    }
}

/// Why a command got no reply.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("redis-server is not running (no socket at {})", socket.display())]
    NotRunning { socket: PathBuf },
    #[error("Redis at {}: {what}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Redis at {}: {what}: not a RESP reply ({why})", socket.display())]
    Protocol { socket: PathBuf, what: String, why: String },
}

/// One connection.
pub struct Conn {
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl Conn {
    /// Connects to the Unix socket `socket`.
    pub fn connect(socket: &Path) -> Result<Conn, RespError> {
        let stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                RespError::NotRunning { socket: socket.to_owned() }
            }
            _ => RespError::Io { socket: socket.to_owned(), what: "connect".into(), source },
        })?;
        let io = |source| RespError::Io { socket: socket.to_owned(), what: "connect".into(), source };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        Ok(Conn { reader: BufReader::new(stream), socket: socket.to_owned() })
    }

    /// Sends one command and reads its reply (an [`Reply::Error`] is a reply).
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RespError> {
        let what = args.first().map(|a| String::from_utf8_lossy(a.as_ref()).to_uppercase()).unwrap_or_default();
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.as_ref().len()).as_bytes());
            out.extend_from_slice(arg.as_ref());
            out.extend_from_slice(b"\r\n");
        }
        let io = |source| RespError::Io { socket: self.socket.clone(), what: what.clone(), source };
        self.reader.get_mut().write_all(&out).map_err(io)?;
        self.read_reply(&what, 0)
    }

    fn read_reply(&mut self, what: &str, depth: usize) -> Result<Reply, RespError> {
        let socket = self.socket.clone();
        let bad = |why: String| RespError::Protocol { socket: socket.clone(), what: what.to_owned(), why };
        if depth > 8 {
            return Err(bad("nested too deep".into()));
        }
        let line = self.read_line(what)?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || rest.parse::<i64>().map_err(|_| bad(format!("bad length {rest:?}")));
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Int(number()?)),
            "$" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).map_err(|_| bad("bad length".into()))?;
                if len > MAX_BULK {
                    return Err(bad(format!("a bulk string of {len} bytes")));
                }
                let mut body = vec![0; len + 2];
                let io = |source| RespError::Io { socket: self.socket.clone(), what: what.to_owned(), source };
                self.reader.read_exact(&mut body).map_err(io)?;
                if !body.ends_with(b"\r\n") {
                    return Err(bad("a bulk string without its CRLF".into()));
                }
                body.truncate(len);
                Ok(Reply::Bulk(Some(body)))
            }
            "*" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                let len = usize::try_from(len).map_err(|_| bad("bad length".into()))?;
                if len > MAX_ITEMS {
                    return Err(bad(format!("an array of {len} items")));
                }
                let items = (0..len).map(|_| self.read_reply(what, depth + 1)).collect::<Result<_, _>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(bad(format!("unknown reply type {kind:?}"))),
        }
    }

    /// One CRLF-ended line, without its CRLF (at most 64 KiB).
    fn read_line(&mut self, what: &str) -> Result<String, RespError> {
        let mut line = Vec::new();
        let io = |source| RespError::Io { socket: self.socket.clone(), what: what.to_owned(), source };
        let read = (&mut self.reader).take(64 << 10).read_until(b'\n', &mut line).map_err(io)?;
        if read == 0 || !line.ends_with(b"\r\n") {
            let why = if read == 0 { "the connection closed" } else { "a line without CRLF" };
            return Err(RespError::Protocol { socket: self.socket.clone(), what: what.to_owned(), why: why.into() });
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake server that answers each command with the next canned reply and
    /// keeps what it was sent.
    fn serve(replies: &'static [&'static [u8]]) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            for reply in replies {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                stream.write_all(reply).unwrap();
            }
            got
        });
        (dir, socket, server)
    }

    #[test]
    fn commands_are_bulk_arrays_and_every_reply_shape_is_read() {
        let (_dir, socket, server) = serve(&[
            b"+OK\r\n",
            b"-NOPERM this user has no permissions\r\n",
            b":42\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"*2\r\n$1\r\n0\r\n*2\r\n$5\r\nblog:\r\n$-1\r\n",
        ]);
        let mut conn = Conn::connect(&socket).unwrap();
        assert_eq!(conn.call(&["PING"]).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(conn.call(&["GET", "x"]).unwrap(), Reply::Error("NOPERM this user has no permissions".into()));
        assert_eq!(conn.call(&["DBSIZE"]).unwrap(), Reply::Int(42));
        assert_eq!(conn.call(&["GET", "y"]).unwrap().text().as_deref(), Some("he\r\nl"), "binary-safe");
        let scan = conn.call(&["SCAN", "0"]).unwrap();
        assert_eq!(scan.items()[1].items(), vec![Reply::Bulk(Some(b"blog:".to_vec())), Reply::Bulk(None)]);
        let sent = server.join().unwrap();
        assert!(sent.starts_with(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n"), "{sent:?}");
    }

    #[test]
    fn a_broken_or_huge_reply_is_an_error_that_names_no_argument() {
        let (_dir, socket, _server) = serve(&[b"$999999999999\r\n"]);
        let mut conn = Conn::connect(&socket).unwrap();
        let err = conn.call(&["AUTH", "berth", "s3cret-password"]).unwrap_err().to_string();
        assert!(err.contains("AUTH") && !err.contains("s3cret"), "{err}");
        let missing = Conn::connect(Path::new("/nonexistent/redis.sock")).err().unwrap();
        assert!(matches!(missing, RespError::NotRunning { .. }), "{missing}");
    }
}
