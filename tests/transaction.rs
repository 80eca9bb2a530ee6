//! The config transaction against the real nginx, run from a sandbox prefix on a
//! loopback port: a good vhost is served, a broken one is refused by `nginx -t`
//! and the previous files come back while the other site keeps answering.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth::host::services::{Service, Services};
use berth::host::transaction::{apply, Applied, FileChange};
use berth::host::{Host, System};
use berth::protocol::ErrorCode;

/// A sandboxed nginx: its own nginx.conf, pid, logs and temp dirs under `root`.
struct Nginx {
    root: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    fn start() -> Nginx {
        let root = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
        let nginx = Nginx { root, port };
        nginx.host().run(&nginx.services().start(&Service::Nginx)).expect("nginx starts from the sandbox");
        nginx
    }

    fn host(&self) -> System {
        System::new(self.root.path().to_owned())
    }

    fn services(&self) -> Services {
        Services::detect(self.root.path())
    }

    fn site(&self, name: &str, body: &str) -> FileChange {
        let conf = format!(
            "server {{\n  listen 127.0.0.1:{};\n  server_name {name};\n  location / {{ return 200 \"{body}\"; }}\n}}\n",
            self.port
        );
        FileChange::write(self.path(&format!("{name}.conf")), conf, 0o644, Service::Nginx)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.root.path().join("etc/nginx/sites-enabled").join(file)
    }

    /// Polls until `host` answers `body` (a reload takes effect asynchronously).
    fn answers(&self, host: &str, body: &str) {
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

fn get(port: u16, host: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn a_good_change_is_served_a_broken_one_is_refused_and_restored() {
    let nginx = Nginx::start();
    let (host, services) = (nginx.host(), nginx.services());

    let applied = apply(&host, &services, &[nginx.site("a.test", "site A")]).unwrap();
    assert_eq!(applied.reloaded, [Service::Nginx]);
    nginx.answers("a.test", "site A");

    // The same state again: nothing written, nothing reloaded.
    assert_eq!(apply(&host, &services, &[nginx.site("a.test", "site A")]).unwrap(), Applied::default());

    // A broken vhost next to a change of site A: nginx -t refuses, both files come back.
    let broken = FileChange::write(nginx.path("b.test.conf"), "server { listen 1.2.3.4:80; bogus_directive on; }", 0o644, Service::Nginx);
    let err = apply(&host, &services, &[nginx.site("a.test", "site A, changed"), broken]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    assert!(err.to_string().contains("bogus_directive"), "the tool's words: {err}");
    assert!(!nginx.path("b.test.conf").exists());
    assert!(std::fs::read_to_string(nginx.path("a.test.conf")).unwrap().contains("\"site A\""));
    nginx.answers("a.test", "site A");

    // Removing the site is a change too.
    apply(&host, &services, &[FileChange::remove(nginx.path("a.test.conf"), Service::Nginx)]).unwrap();
    assert!(!Path::new(&nginx.path("a.test.conf")).exists());
}
