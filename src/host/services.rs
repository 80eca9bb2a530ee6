//! The web servers berth drives, and how to check, reload and start each.
//!
//! The commands are data: one table per service and mode, so every job reloads
//! the same way. Under systemd (PID 1, real root) berth asks systemctl; anywhere
//! else (containers, test sandboxes) it uses the servers' own controls pointed at
//! the config under `root`: `nginx -c`, `apache2ctl` with `APACHE_CONFDIR`,
//! `php-fpmX.Y -y`, and `start-stop-daemon` to send PHP-FPM its reload signal.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::host::generation::{self, Generation, Kind};
use crate::host::Cmd;

/// A service whose config berth writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Nginx,
    Apache,
    /// PHP-FPM of one PHP version ("8.2").
    PhpFpm(String),
    /// The MySQL-compatible server, by its unit: `mariadb` or `mysql` (see [`mysql_installed`]).
    Mysql(&'static str),
}

/// The MySQL-compatible server installed under `root`, as a [`Service`].
pub fn mysql_installed(root: &Path) -> Option<Service> {
    if crate::host::fs::under_root(root, "/usr/sbin/mariadbd").exists() {
        return Some(Service::Mysql("mariadb"));
    }
    crate::host::fs::under_root(root, "/usr/sbin/mysqld").exists().then_some(Service::Mysql("mysql"))
}

impl Service {
    /// The systemd unit (and the name in messages).
    pub fn unit(&self) -> String {
        match self {
            Service::Nginx => "nginx".into(),
            Service::Apache => "apache2".into(),
            Service::PhpFpm(version) => format!("php{version}-fpm"),
            Service::Mysql(unit) => (*unit).to_owned(),
        }
    }

    /// The service whose unit is `unit` ([`Service::unit`] read back).
    pub fn from_unit(unit: &str) -> Option<Service> {
        match unit {
            "nginx" => Some(Service::Nginx),
            "apache2" => Some(Service::Apache),
            "mariadb" => Some(Service::Mysql("mariadb")),
            "mysql" => Some(Service::Mysql("mysql")),
            _ => {
                let version = unit.strip_prefix("php")?.strip_suffix("-fpm")?;
                let (major, minor) = version.split_once('.')?;
                let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
                (digits(major) && digits(minor)).then(|| Service::PhpFpm(version.to_owned()))
            }
        }
    }

    /// Whether the server's program is installed under `root`.
    pub fn installed(&self, root: &Path) -> bool {
        crate::host::fs::under_root(root, &self.program()).exists()
    }

    /// The server's own program (what a pid file's process runs).
    fn program(&self) -> String {
        match self {
            Service::Nginx => "/usr/sbin/nginx".into(),
            Service::Apache => "/usr/sbin/apache2".into(),
            Service::PhpFpm(version) => format!("/usr/sbin/php-fpm{version}"),
            Service::Mysql("mariadb") => "/usr/sbin/mariadbd".into(),
            Service::Mysql(_) => "/usr/sbin/mysqld".into(),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unit())
    }
}

/// How services are controlled on this host.
#[derive(Debug, Clone)]
pub struct Services {
    root: PathBuf,
    systemd: bool,
}

impl Services {
    /// systemd when the root is the real one and systemd runs the machine.
    pub fn detect(root: &Path) -> Self {
        let systemd = root == Path::new("/") && Path::new("/run/systemd/system").is_dir();
        Services { root: root.to_owned(), systemd }
    }

    /// Whether systemd runs the services.
    pub fn systemd(&self) -> bool {
        self.systemd
    }

    /// For unit tests of the systemd commands.
    #[cfg(test)]
    pub fn systemd_for_tests() -> Self {
        Services { root: PathBuf::from("/"), systemd: true }
    }

    /// `systemctl daemon-reload`, after a unit drop-in changed (systemd only).
    pub fn daemon_reload(&self) -> Option<Cmd> {
        self.systemd.then(|| Cmd::new("/usr/bin/systemctl").arg("daemon-reload"))
    }

    /// A full restart (a unit drop-in applies to a new process); outside systemd,
    /// where berth writes no drop-ins, the same as a reload.
    pub fn restart(&self, service: &Service) -> Cmd {
        if self.systemd {
            return Cmd::new("/usr/bin/systemctl").args(["restart", &service.unit()]);
        }
        self.reload(service)
    }

    /// The service's own config check.
    pub fn check(&self, service: &Service) -> Cmd {
        match service {
            Service::Nginx => self.nginx().args(["-t", "-q"]),
            Service::Apache => self.apache2ctl().arg("-t"),
            Service::PhpFpm(version) => self.php_fpm(version).arg("-t"),
            // berth writes no MySQL config; reading the option files is its check.
            Service::Mysql(_) => Cmd::new("/usr/bin/my_print_defaults").arg("mysqld"),
        }
    }

    /// A graceful reload; [`Services::start`] is the fallback when it is not running.
    pub fn reload(&self, service: &Service) -> Cmd {
        if self.systemd {
            return Cmd::new("/usr/bin/systemctl").args(["reload-or-restart", &service.unit()]);
        }
        match service {
            Service::Nginx => self.nginx().args(["-s", "reload"]),
            // apache2ctl graceful also starts a server that is not running.
            Service::Apache => self.apache2ctl().arg("graceful"),
            Service::PhpFpm(version) => Cmd::new("/usr/sbin/start-stop-daemon").args([
                "--stop".to_string(),
                "--signal".into(),
                "USR2".into(),
                "--pidfile".into(),
                self.php_fpm_pid_file(version).to_string_lossy().into_owned(),
                "--exec".into(),
                format!("/usr/sbin/php-fpm{version}"),
            ]),
            Service::Mysql(unit) => Cmd::new(format!("/etc/init.d/{unit}")).arg("reload"),
        }
    }

    pub fn start(&self, service: &Service) -> Cmd {
        if self.systemd {
            return Cmd::new("/usr/bin/systemctl").args(["start", &service.unit()]);
        }
        match service {
            Service::Nginx => self.nginx(),
            Service::Apache => self.apache2ctl().arg("start"),
            Service::PhpFpm(version) => self.php_fpm(version),
            Service::Mysql(unit) => Cmd::new(format!("/etc/init.d/{unit}")).arg("start"),
        }
    }

    /// A real restart (`service.restart`): `systemctl restart` under systemd; otherwise
    /// the server is stopped through its pid file (start-stop-daemon waits until it
    /// has exited; one that is not running is fine), then started.
    pub fn full_restart(&self, service: &Service) -> Vec<Cmd> {
        if self.systemd {
            return vec![Cmd::new("/usr/bin/systemctl").args(["restart", &service.unit()])];
        }
        let stop = Cmd::new("/usr/sbin/start-stop-daemon").args([
            "--stop".to_string(),
            "--oknodo".into(),
            "--retry".into(),
            "TERM/30/KILL/5".into(),
            "--pidfile".into(),
            self.pid_file(service).to_string_lossy().into_owned(),
            "--exec".into(),
            service.program(),
        ]);
        vec![stop, self.start(service)]
    }

    /// How to ask whether `service` runs: under systemd a command (`is-active`);
    /// otherwise the pid file it names a live process.
    pub fn running(&self, host: &dyn crate::host::Host, service: &Service) -> bool {
        if self.systemd {
            return host.run(&Cmd::new("/usr/bin/systemctl").args(["is-active", "--quiet", &service.unit()])).is_ok();
        }
        let pid = std::fs::read_to_string(self.pid_file(service)).unwrap_or_default();
        pid.trim().parse::<u32>().is_ok_and(|pid| pid > 0 && Path::new(&format!("/proc/{pid}")).exists())
    }

    /// What serves `service` now ([`generation::observe`] through its pid file).
    pub fn generation(&self, service: &Service) -> Generation {
        match service {
            Service::Nginx | Service::Apache => generation::observe(&self.pid_file(service), Kind::Workers),
            Service::PhpFpm(_) => generation::observe(&self.pid_file(service), Kind::Reexec),
            Service::Mysql(_) => Generation::default(),
        }
    }

    /// The unix sockets the new config must listen on: PHP-FPM's pool sockets
    /// (read once per reload: a thousand pool files are not read every poll).
    pub fn sockets(&self, service: &Service) -> Vec<String> {
        match service {
            Service::PhpFpm(version) => {
                generation::pool_sockets(&self.root.join(format!("etc/php/{version}/fpm/pool.d")))
            }
            _ => Vec::new(),
        }
    }

    /// Whether the generation that replaced `before` serves `service`'s new
    /// connections, with `sockets` in place (a MySQL reload has nothing to wait for).
    pub fn live(&self, service: &Service, before: &Generation, sockets: &[String]) -> bool {
        let now = self.generation(service);
        match service {
            Service::Nginx | Service::Apache => generation::replaced(Kind::Workers, before, &now, true),
            Service::PhpFpm(_) => {
                generation::replaced(Kind::Reexec, before, &now, generation::sockets_present(sockets))
            }
            Service::Mysql(_) => true,
        }
    }

    /// Where the server writes its master's pid (outside systemd).
    pub fn pid_file(&self, service: &Service) -> PathBuf {
        match service {
            Service::Nginx => {
                let conf = std::fs::read_to_string(self.root.join("etc/nginx/nginx.conf")).unwrap_or_default();
                conf.lines()
                    .filter_map(|line| line.trim().strip_prefix("pid "))
                    .map(|rest| PathBuf::from(rest.trim().trim_end_matches(';').trim()))
                    .next_back()
                    .unwrap_or_else(|| self.root.join("run/nginx.pid"))
            }
            // Debian's /etc/apache2/envvars: APACHE_PID_FILE.
            Service::Apache => self.root.join("run/apache2/apache2.pid"),
            Service::PhpFpm(version) => self.php_fpm_pid_file(version),
            Service::Mysql(_) => self.root.join("run/mysqld/mysqld.pid"),
        }
    }

    fn nginx(&self) -> Cmd {
        let cmd = Cmd::new("/usr/sbin/nginx");
        if self.root == Path::new("/") {
            return cmd;
        }
        let conf = self.root.join("etc/nginx/nginx.conf");
        cmd.arg("-c").arg(conf.to_string_lossy()).arg("-p").arg(self.root.join("etc/nginx").to_string_lossy())
    }

    fn apache2ctl(&self) -> Cmd {
        let cmd = Cmd::new("/usr/sbin/apache2ctl");
        if self.root == Path::new("/") {
            return cmd;
        }
        cmd.env("APACHE_CONFDIR", self.root.join("etc/apache2").to_string_lossy())
    }

    fn php_fpm(&self, version: &str) -> Cmd {
        // `version` is X.Y of a detected runtime (validated digits), never raw input.
        let program = format!("/usr/sbin/php-fpm{version}");
        Cmd::new(program).arg("--fpm-config").arg(self.php_fpm_conf(version).to_string_lossy())
    }

    fn php_fpm_conf(&self, version: &str) -> PathBuf {
        self.root.join(format!("etc/php/{version}/fpm/php-fpm.conf"))
    }

    /// The `pid` of the PHP-FPM config, or Debian's default, under root.
    fn php_fpm_pid_file(&self, version: &str) -> PathBuf {
        let conf = std::fs::read_to_string(self.php_fpm_conf(version)).unwrap_or_default();
        conf.lines()
            .filter_map(|line| line.trim().strip_prefix("pid"))
            .filter_map(|rest| rest.trim_start().strip_prefix('='))
            .map(|path| PathBuf::from(path.trim()))
            .next_back()
            .unwrap_or_else(|| self.root.join(format!("run/php/php{version}-fpm.pid")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandboxed() -> Services {
        Services { root: PathBuf::from("/tmp/sb"), systemd: false }
    }

    #[test]
    fn systemd_reloads_units() {
        let services = Services { root: PathBuf::from("/"), systemd: true };
        assert_eq!(
            services.reload(&Service::PhpFpm("8.2".into())).to_string(),
            "/usr/bin/systemctl reload-or-restart php8.2-fpm"
        );
        assert_eq!(services.start(&Service::Nginx).to_string(), "/usr/bin/systemctl start nginx");
        assert_eq!(services.check(&Service::Nginx).to_string(), "/usr/sbin/nginx -t -q");
    }

    #[test]
    fn sandboxes_point_each_server_at_the_config_under_root() {
        let services = sandboxed();
        assert_eq!(
            services.check(&Service::Nginx).to_string(),
            "/usr/sbin/nginx -c /tmp/sb/etc/nginx/nginx.conf -p /tmp/sb/etc/nginx -t -q"
        );
        assert_eq!(
            services.reload(&Service::Apache).to_string(),
            "APACHE_CONFDIR=/tmp/sb/etc/apache2 /usr/sbin/apache2ctl graceful"
        );
        assert_eq!(
            services.check(&Service::PhpFpm("8.2".into())).to_string(),
            "/usr/sbin/php-fpm8.2 --fpm-config /tmp/sb/etc/php/8.2/fpm/php-fpm.conf -t"
        );
    }

    #[test]
    fn a_full_restart_stops_through_the_pid_file_then_starts() {
        let services = sandboxed();
        let steps: Vec<String> = services.full_restart(&Service::Nginx).iter().map(Cmd::to_string).collect();
        assert_eq!(
            steps,
            [
                "/usr/sbin/start-stop-daemon --stop --oknodo --retry TERM/30/KILL/5 --pidfile /tmp/sb/run/nginx.pid --exec /usr/sbin/nginx",
                "/usr/sbin/nginx -c /tmp/sb/etc/nginx/nginx.conf -p /tmp/sb/etc/nginx"
            ]
        );
        let mysql: Vec<String> = services.full_restart(&Service::Mysql("mariadb")).iter().map(Cmd::to_string).collect();
        assert!(mysql[0].ends_with("--pidfile /tmp/sb/run/mysqld/mysqld.pid --exec /usr/sbin/mariadbd"), "{mysql:?}");
        assert_eq!(mysql[1], "/etc/init.d/mariadb start");
        let systemd = Services::systemd_for_tests();
        assert_eq!(systemd.full_restart(&Service::Apache)[0].to_string(), "/usr/bin/systemctl restart apache2");
    }

    #[test]
    fn running_means_the_pid_file_names_a_live_process() {
        let root = tempfile::tempdir().unwrap();
        let services = Services { root: root.path().to_owned(), systemd: false };
        let host = crate::host::fake::FakeHost::new(root.path());
        assert!(!services.running(&host, &Service::Apache));
        std::fs::create_dir_all(root.path().join("run/apache2")).unwrap();
        std::fs::write(root.path().join("run/apache2/apache2.pid"), format!("{}\n", std::process::id())).unwrap();
        assert!(services.running(&host, &Service::Apache));
        std::fs::write(root.path().join("run/apache2/apache2.pid"), "999999999\n").unwrap();
        assert!(!services.running(&host, &Service::Apache));
    }

    #[test]
    fn php_fpm_is_signalled_through_its_pid_file() {
        let root = tempfile::tempdir().unwrap();
        let services = Services { root: root.path().to_owned(), systemd: false };
        let conf = root.path().join("etc/php/8.2/fpm");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("php-fpm.conf"), "[global]\n;pid = /nope\npid = /sandbox/fpm.pid\n").unwrap();
        let reload = services.reload(&Service::PhpFpm("8.2".into())).to_string();
        assert!(reload.ends_with("--pidfile /sandbox/fpm.pid --exec /usr/sbin/php-fpm8.2"), "{reload}");
    }
}
