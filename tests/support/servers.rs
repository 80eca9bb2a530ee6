//! Real servers from Debian's packages, each run from a sandbox prefix on a
//! loopback port, for tests of what berth writes for them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth::host::services::{Service, Services};
use berth::host::transaction::FileChange;
use berth::host::{Host, System};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A sandboxed nginx: its own nginx.conf, pid, logs and temp dirs under `root`.
pub struct Nginx {
    pub root: tempfile::TempDir,
    pub port: u16,
}

impl Nginx {
    pub fn start() -> Nginx {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let r = root.path().display();
        for dir in ["etc/nginx/sites-enabled", "run", "var/log/nginx", "var/lib/nginx"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let conf = format!(
            "pid {r}/run/nginx.pid;\nerror_log {r}/var/log/nginx/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {r}/var/lib/nginx/body;\n  proxy_temp_path {r}/var/lib/nginx/proxy;\n  \
             fastcgi_temp_path {r}/var/lib/nginx/fastcgi;\n  uwsgi_temp_path {r}/var/lib/nginx/uwsgi;\n  \
             scgi_temp_path {r}/var/lib/nginx/scgi;\n  include {r}/etc/nginx/sites-enabled/*.conf;\n}}\n"
        );
        std::fs::write(root.path().join("etc/nginx/nginx.conf"), conf).unwrap();
        for include in ["fastcgi_params", "proxy_params", "mime.types"] {
            std::fs::copy(PathBuf::from("/etc/nginx").join(include), root.path().join("etc/nginx").join(include))
                .unwrap();
        }
        let nginx = Nginx { root, port };
        nginx.host().run(&nginx.services().start(&Service::Nginx)).expect("nginx starts from the sandbox");
        nginx
    }

    pub fn host(&self) -> System {
        System::new(self.root.path().to_owned())
    }

    pub fn services(&self) -> Services {
        Services::detect(self.root.path())
    }

    pub fn site(&self, name: &str, body: &str) -> FileChange {
        let conf = format!(
            "server {{\n  listen 127.0.0.1:{};\n  server_name {name};\n  location / {{ return 200 \"{body}\"; }}\n}}\n",
            self.port
        );
        FileChange::write(self.path(&format!("{name}.conf")), conf, 0o644, Service::Nginx)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.path().join("etc/nginx/sites-enabled").join(file)
    }

    /// Polls until `host` answers `body` (a reload takes effect asynchronously).
    pub fn answers(&self, host: &str, body: &str) {
        let started = Instant::now();
        loop {
            let got = get(self.port, host);
            if got.as_deref().is_some_and(|r| r.ends_with(body)) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{host} answered {got:?}, not {body:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let conf = self.root.path().join("etc/nginx/nginx.conf");
        let _ = std::process::Command::new("/usr/sbin/nginx").arg("-c").arg(&conf).args(["-s", "stop"]).status();
    }
}

pub fn get(port: u16, host: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
