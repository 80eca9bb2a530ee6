//! Attacks by hosted users, carried out as the user inside a test machine against
//! the real nginx, Apache and PHP-FPM.
//!
//! berth's promise: whatever a hosted user plants or changes in what they own (their
//! home, at any time, also while a job runs), no job and no server berth configures
//! reads, writes, chowns, chmods, deletes or executes anything outside that user's
//! own files, and no other user's jobs or sites stop working because of it.
//!
//! Every attack judges the effect (the file outside is untouched, no code ran as
//! another uid, the secret was not served, the other user's job succeeded), never
//! the mechanism. Each test runs all its attacks and fails at the end naming every
//! one that worked (`ATTACK WORKED [...]` lines on stderr say what was observed).
//!
//! `derek` is the attacker (A), `maria` the victim (B).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::machine::Machine;
use support::verdicts::Verdicts;

const A: &str = "derek";
const B: &str = "maria";
/// What B's `wp-config.php` (0640, in B's web root) and `private.txt` (0640, in B's
/// app dir, outside the web root) hold; no response to anyone else may carry it.
const SECRET: &str = "maria-secret-4242";

/// `script` run by `/bin/sh` inside the machine as the hosted `user` (uid, gid, groups).
fn as_user(machine: &Machine, user: &str, script: &str) -> Output {
    let (reuid, regid) = (format!("--reuid={user}"), format!("--regid={user}"));
    machine.run("/usr/bin/setpriv", &[&reuid, &regid, "--init-groups", "--", "/bin/sh", "-c", script])
}

/// `script` run by `/bin/sh` inside the machine as root (the test's own doing, not the attacker's).
fn as_root(machine: &Machine, script: &str) -> Output {
    machine.run("/bin/sh", &["-c", script])
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn short(body: &str) -> String {
    body.chars().take(300).collect()
}

/// The user writes `content` to `path` (as themselves).
fn put(machine: &Machine, user: &str, path: &str, content: &str) {
    let octal: String = content.bytes().map(|b| format!("\\{b:03o}")).collect();
    let out = as_user(machine, user, &format!("printf '{octal}' > '{path}'"));
    assert!(out.status.success(), "{user} writes {path}: {}", text(&out));
}

fn uid(machine: &Machine, user: &str) -> u32 {
    String::from_utf8_lossy(&machine.run("/usr/bin/id", &["-u", user]).stdout).trim().parse().unwrap()
}

fn home(user: &str) -> String {
    format!("/srv/users/{user}")
}

fn app_dir(user: &str, app: &str) -> String {
    format!("/srv/users/{user}/apps/{app}")
}

fn public(user: &str, app: &str) -> String {
    format!("{}/public", app_dir(user, app))
}

fn success(status: &Value) -> bool {
    status["status"] == "success"
}

fn sysuser(machine: &Machine, name: &str) {
    let done = machine.job("sysuser.create", json!({"name": name}));
    assert!(success(&done), "{done}");
}

fn create(machine: &Machine, user: &str, app: &str, stack: &str) -> Value {
    machine.job(
        "app.create",
        json!({"name": app, "sysuser": user, "runtime": "php8.2", "domains": [format!("{app}.test")], "stack": stack}),
    )
}

/// Creates the app and publishes `index.php` answering "APP ok" (as its user).
fn site(machine: &Machine, user: &str, app: &str, stack: &str) {
    let done = create(machine, user, app, stack);
    assert!(success(&done), "{done}");
    put(machine, user, &format!("{}/index.php", public(user, app)), &format!("<?php echo '{app} ok';"));
    machine.eventually_get(&format!("{app}.test"), "/index.php", 200);
}

/// B's app with its secrets: `wp-config.php` in the web root and `private.txt` beside it, both 0640.
fn victim_site(machine: &Machine, stack: &str) {
    site(machine, B, "bapp", stack);
    put(
        machine,
        B,
        &format!("{}/wp-config.php", public(B, "bapp")),
        &format!("<?php define('DB_PASSWORD', '{SECRET}');"),
    );
    put(machine, B, &format!("{}/private.txt", app_dir(B, "bapp")), SECRET);
    let out = as_user(
        machine,
        B,
        &format!("chmod 0640 {0}/wp-config.php {1}/private.txt", public(B, "bapp"), app_dir(B, "bapp")),
    );
    assert!(out.status.success());
}

/// Whether `host` answers `path` with a body containing `want` within 15 seconds.
fn answers(machine: &Machine, host: &str, path: &str, want: &str) -> bool {
    let started = Instant::now();
    loop {
        if machine.get(host, path).1.contains(want) {
            return true;
        }
        if started.elapsed() > Duration::from_secs(15) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Names, owners, modes and types under `path` (to `depth`), plus the checksums of its
/// regular files when `contents`: equal snapshots mean nothing there was touched.
fn snapshot(machine: &Machine, path: &str, depth: u32, contents: bool) -> String {
    let sums = if contents {
        format!("; find {path} -maxdepth {depth} -type f -exec md5sum {{}} + | sort")
    } else {
        String::new()
    };
    text(&as_root(machine, &format!("find {path} -maxdepth {depth} -printf '%P %U:%G %m %y\\n' | sort{sums}")))
}

fn exists(machine: &Machine, path: &str) -> bool {
    as_root(machine, &format!("test -e {path} || test -L {path}")).status.success()
}

/// `berth apply` of one job, killed after `secs`: the final status, or None when it did not finish.
fn job_within(machine: &Machine, secs: u32, kind: &str, params: Value) -> Option<Value> {
    let file = machine.dir.path().join("attack-job.json");
    std::fs::write(&file, json!({"kind": kind, "params": params}).to_string()).unwrap();
    let config = machine.config();
    let out = machine.run(
        "/usr/bin/timeout",
        &[
            "-s",
            "KILL",
            &secs.to_string(),
            env!("CARGO_BIN_EXE_berth"),
            "apply",
            "--config",
            config.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    let last = String::from_utf8_lossy(&out.stdout).lines().last().map(str::to_owned)?;
    serde_json::from_str(&last).ok()
}

/// A world-writable directory in the shared `/tmp` and a PHP probe: wherever the probe
/// runs it leaves `ran-UID` there (when it may) and answers `RAN-AS-UID;` and B's secret
/// (when it can read it). The uids it ran as are the effect judged.
struct Probe {
    dir: tempfile::TempDir,
}

impl Probe {
    fn new() -> Probe {
        let dir = tempfile::Builder::new().prefix("berth-attack-").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        Probe { dir }
    }

    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn php(&self) -> String {
        format!(
            "<?php $u = posix_geteuid(); @file_put_contents('{}/ran-' . $u, '1'); echo 'RAN-AS-' . $u . ';'; \
             echo @file_get_contents('{}/wp-config.php');",
            self.dir(),
            public(B, "bapp")
        )
    }

    fn shell(&self) -> String {
        format!(
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'; u=$(id -u); touch {}/ran-$u; echo \"RAN-AS-$u;\"\n",
            self.dir()
        )
    }

    /// The uids the probe ran as (from `body` and the markers); the markers are cleared.
    fn ran_as(&self, body: &str) -> Vec<u32> {
        let mut uids = Vec::new();
        for piece in body.split("RAN-AS-").skip(1) {
            if let Some((digits, _)) = piece.split_once(';') {
                if let Ok(uid) = digits.parse() {
                    uids.push(uid);
                }
            }
        }
        for entry in std::fs::read_dir(self.dir.path()).unwrap().map_while(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(uid) = name.strip_prefix("ran-").and_then(|u| u.parse().ok()) {
                uids.push(uid);
                let _ = std::fs::remove_file(entry.path());
            }
        }
        uids
    }

    /// Judges that code reached through `body`'s request ran as `allowed` only, and B's secret was not served.
    fn judge(&self, verdicts: &mut Verdicts, attack: &str, allowed: u32, body: &str) {
        let uids = self.ran_as(body);
        let held = uids.iter().all(|u| *u == allowed) && !body.contains(SECRET);
        verdicts.judge(
            attack,
            held,
            format!("code ran as uids {uids:?} (only {allowed} allowed); response: {}", short(body)),
        );
    }
}

/// Attack 1 and its kin: the user replaces their log files and log directories with links
/// and files of their choosing, then another user's web-config job, `nginx -t` and requests
/// run; judged: no file outside was created or written, the other user's job succeeds.
#[test]
fn logs_replaced_by_links_never_reach_files_outside() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    site(&machine, B, "bapp", "nginx");
    as_root(&machine, "printf 'root data\\n' | tee /etc/berth-victim /srv/berth-victim && chmod 0644 /etc/berth-victim /srv/berth-victim");
    // Every server has written its log files once.
    machine.get("aapp.test", "/missing.php");
    let logs = format!("{}/log/aapp", home(A));
    let b_index = format!("{}/index.php", public(B, "bapp"));
    let mut b_apps = 0;
    // Another user's web-config job, both config tests, requests to both sites, and A's own app.update.
    let mut provoke = |verdicts: &mut Verdicts, attack: &str| {
        b_apps += 1;
        let name = format!("bnew{b_apps}");
        let done = create(&machine, B, &name, "nginx");
        verdicts.judge(attack, success(&done), format!("B's app.create failed: {done}"));
        machine.run("/usr/sbin/nginx", &["-t"]);
        machine.run("/usr/sbin/apache2ctl", &["-t"]);
        for host in ["aapp.test", "bapp.test"] {
            machine.get(host, "/x.so");
            machine.get(host, "/x.php");
        }
        machine.job("app.update", json!({"name": "aapp", "domains": ["aapp.test", "alias.aapp.test"]}));
        machine.get("aapp.test", "/x.so");
    };
    // Puts things back between attacks: the test's own doing, as root.
    let restore = |machine: &Machine| {
        as_root(machine, "rm -f /etc/ld.so.preload");
        as_user(machine, A, &format!("cd {} && rm -rf log elsewhere && mkdir log", home(A)));
        machine.job("app.update", json!({"name": "aapp", "domains": ["aapp.test"]}));
        machine.get("aapp.test", "/x.php");
    };
    let etc_before = snapshot(&machine, "/etc", 1, false);
    let victim_before = snapshot(&machine, "/etc/berth-victim /srv/berth-victim", 0, true);
    let b_before = snapshot(&machine, &b_index, 0, true);

    // 1a: every log file of A's app becomes a symlink to /etc/ld.so.preload.
    let out = as_user(
        &machine,
        A,
        &format!("cd {logs} && for f in *; do rm -f \"$f\"; ln -s /etc/ld.so.preload \"$f\"; done; ls -l"),
    );
    assert!(out.status.success(), "{}", text(&out));
    provoke(&mut verdicts, "1a log files -> /etc/ld.so.preload");
    verdicts.judge(
        "1a log files -> /etc/ld.so.preload",
        !exists(&machine, "/etc/ld.so.preload"),
        "/etc/ld.so.preload was created",
    );
    restore(&machine);

    // 1b: the app's log directory becomes a symlink to /etc.
    as_user(&machine, A, &format!("rm -rf {logs} && ln -s /etc {logs}"));
    provoke(&mut verdicts, "1b log dir -> /etc");
    let etc_now = snapshot(&machine, "/etc", 1, false);
    verdicts.judge(
        "1b log dir -> /etc",
        etc_now == etc_before,
        format!("/etc changed:\n{}", diff(&etc_before, &etc_now)),
    );
    restore(&machine);

    // 1c: ~/log itself becomes a symlink to a tree of A's whose files link to /etc/ld.so.preload.
    let names =
        "nginx.access.log nginx.error.log apache.access.log apache.error.log php.error.log access.log error.log";
    let h = home(A);
    let out = as_user(
        &machine,
        A,
        &format!(
            "mkdir -p {h}/elsewhere/aapp && cd {h}/elsewhere/aapp && for f in {names}; do ln -s /etc/ld.so.preload $f; done \
             && rm -rf {h}/log && ln -s {h}/elsewhere {h}/log"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    provoke(&mut verdicts, "1c ~/log -> tree of links");
    verdicts.judge(
        "1c ~/log -> tree of links",
        !exists(&machine, "/etc/ld.so.preload"),
        "/etc/ld.so.preload was created",
    );
    restore(&machine);

    // 1d: every log file of A's app becomes a symlink to B's index.php.
    as_user(&machine, A, &format!("cd {logs} && for f in *; do rm -f \"$f\"; ln -s {b_index} \"$f\"; done"));
    provoke(&mut verdicts, "1d log files -> B's file");
    let b_now = snapshot(&machine, &b_index, 0, true);
    verdicts.judge("1d log files -> B's file", b_now == b_before, format!("B's index.php changed: {b_now}"));
    verdicts.judge(
        "1d log files -> B's file",
        machine.get("bapp.test", "/index.php").1 == "bapp ok",
        "B's site no longer answers as it did",
    );
    restore(&machine);

    // 1e: a hard link to a root file in place of a log file (refused by the kernel when
    // fs.protected_hardlinks is 1; then the root file must still be untouched).
    let out =
        as_user(&machine, A, &format!("cd {logs} && for f in *; do rm -f \"$f\"; ln /etc/berth-victim \"$f\" || ln /srv/berth-victim \"$f\"; done"));
    eprintln!("1e hard link attempt: {}", text(&out));
    provoke(&mut verdicts, "1e log files hard-linked to a root file");
    let victim_now = snapshot(&machine, "/etc/berth-victim /srv/berth-victim", 0, true);
    verdicts.judge(
        "1e log files hard-linked to a root file",
        victim_now == victim_before,
        format!("changed: {victim_now}"),
    );
    verdicts.assert_none_worked();
}

fn diff(before: &str, after: &str) -> String {
    let old: std::collections::BTreeSet<&str> = before.lines().collect();
    let new: std::collections::BTreeSet<&str> = after.lines().collect();
    let gone = old.difference(&new).map(|l| format!("- {l}"));
    let came = new.difference(&old).map(|l| format!("+ {l}"));
    gone.chain(came).collect::<Vec<_>>().join("\n")
}

/// Attack 2 and its kin: A's `.htaccess`, `.user.ini` and PHP try to run code as B
/// (through B's pool socket) or as www-data (Debian's default `www` pool), or to lift
/// their own pool's limits; judged: every probe ran as A only, B's secret never shows.
#[test]
fn htaccess_and_php_cannot_run_code_as_another_user() {
    let machine = Machine::start();
    // Debian enables this with php8.2-fpm when Apache is installed: .phtml/.phar go
    // to the default `www` pool (www-data, which is in every hosted user's group).
    std::os::unix::fs::symlink(
        "../conf-available/php8.2-fpm.conf",
        machine.path("/etc/apache2/conf-enabled/php8.2-fpm.conf"),
    )
    .unwrap();
    let mut verdicts = Verdicts::new();
    let probe = Probe::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    site(&machine, A, "aother", "nginx-apache");
    victim_site(&machine, "nginx-apache");
    let a = uid(&machine, A);
    let web = public(A, "aapp");
    let b_sock = "/run/php/berth-bapp-8.2.sock";
    let b_handler = format!("proxy:unix:{b_sock}|fcgi://localhost");
    put(&machine, A, &format!("{}/x.php", probe.dir()), &probe.php());
    as_user(&machine, A, &format!("chmod 0644 {}/x.php", probe.dir()));
    for name in ["probe.php", "probe.att", "probe.phar", "probe.phtml", "sub/probe.php"] {
        as_user(&machine, A, &format!("mkdir -p {web}/sub"));
        put(&machine, A, &format!("{web}/{name}"), &probe.php());
    }
    put(&machine, A, &format!("{}/secret.txt", public(A, "aother")), "aother-secret-77");
    let htaccess = |body: &str| put(&machine, A, &format!("{web}/.htaccess"), body);
    let attack = |verdicts: &mut Verdicts, name: &str, path: &str| {
        let (code, body) = machine.get("aapp.test", path);
        eprintln!("{name}: {code}");
        probe.judge(verdicts, name, a, &body);
    };
    // The check itself works: the probe runs as A in A's pool.
    let (_, own) = machine.get("aapp.test", "/probe.php");
    // (Its marker file in /tmp is written only where open_basedir lets PHP reach /tmp,
    // which berth's pools no longer do; the uid it prints is the evidence.)
    let ran = probe.ran_as(&own);
    assert!(!ran.is_empty() && ran.iter().all(|u| *u == a), "{own}");

    // 2a: SetHandler to B's pool, for a .php file and for another name.
    htaccess(&format!("<FilesMatch \"\\.(php|att)$\">\nSetHandler \"{b_handler}\"\n</FilesMatch>\nRewriteEngine On\nRewriteRule ^go$ probe.att [L]\n"));
    attack(&mut verdicts, "2a SetHandler B's socket (.php)", "/probe.php");
    attack(&mut verdicts, "2a SetHandler B's socket (.att)", "/go");
    put(&machine, A, &format!("{web}/sub/.htaccess"), &format!("SetHandler \"{b_handler}\"\n"));
    attack(&mut verdicts, "2a SetHandler B's socket (directory)", "/sub/probe.php");
    as_user(&machine, A, &format!("rm {web}/sub/.htaccess"));

    // 2b: a proxy rewrite to B's socket, for a script in the shared /tmp and one in A's tree.
    htaccess(&format!(
        "RewriteEngine On\nRewriteRule ^go$ \"unix:{b_sock}|fcgi://localhost{}/x.php\" [P,L]\n\
         RewriteRule ^own$ \"unix:{b_sock}|fcgi://localhost{web}/probe.php\" [P,L]\n",
        probe.dir()
    ));
    attack(&mut verdicts, "2b RewriteRule [P] to B's socket, script in /tmp", "/go");
    attack(&mut verdicts, "2b RewriteRule [P] to B's socket, script in A's tree", "/own");

    // 2c: a rewrite setting B's socket as the handler.
    htaccess(&format!("RewriteEngine On\nRewriteRule ^go$ probe.att [H={b_handler},L]\nRewriteRule ^php$ probe.php [H={b_handler},L]\n"));
    attack(&mut verdicts, "2c RewriteRule [H=proxy:B] (.att)", "/go");
    attack(&mut verdicts, "2c RewriteRule [H=proxy:B] (.php)", "/php");

    // 2d: AddHandler to B's socket.
    htaccess(&format!("AddHandler \"{b_handler}\" .att .php\nRewriteEngine On\nRewriteRule ^go$ probe.att [L]\n"));
    attack(&mut verdicts, "2d AddHandler B's socket (.att)", "/go");
    attack(&mut verdicts, "2d AddHandler B's socket (.php)", "/probe.php");

    // 2e: .phar / .phtml reach Debian's www pool (www-data) through Apache.
    htaccess("RewriteEngine On\nRewriteRule ^phar$ probe.phar [L]\nRewriteRule ^phtml$ probe.phtml [L]\n");
    attack(&mut verdicts, "2e .phar through Apache to the www pool", "/phar");
    attack(&mut verdicts, "2e .phtml through Apache to the www pool", "/phtml");

    // 2f: PHP settings from .htaccess: open_basedir lifted, a prepended file.
    let reader = "<?php echo 'READ:', @file_get_contents($_GET['f']) ?: 'denied';";
    put(&machine, A, &format!("{web}/read.php"), reader);
    let other = format!("{}/secret.txt", public(A, "aother"));
    for (name, directive) in [
        ("2f SetEnv PHP_ADMIN_VALUE open_basedir=/", "SetEnv PHP_ADMIN_VALUE \"open_basedir=/\""),
        ("2f SetEnv PHP_VALUE open_basedir=/", "SetEnv PHP_VALUE \"open_basedir=/\""),
        ("2f php_admin_value open_basedir /", "php_admin_value open_basedir /"),
    ] {
        htaccess(&format!("{directive}\n"));
        let (_, body) = machine.get("aapp.test", &format!("/read.php?f={other}"));
        verdicts.judge(name, !body.contains("aother-secret-77"), format!("read another app's file: {}", short(&body)));
    }
    htaccess(&format!("SetEnv PHP_VALUE \"auto_prepend_file={}/wp-config.php\"\n", public(B, "bapp")));
    attack(&mut verdicts, "2f SetEnv PHP_VALUE auto_prepend_file=B's file", "/probe.php");
    htaccess(&format!("SetEnv PHP_VALUE \"auto_prepend_file={}/x.php\"\n", probe.dir()));
    attack(&mut verdicts, "2f SetEnv PHP_VALUE auto_prepend_file=/tmp script", "/read.php?f=/nonexistent");
    htaccess("");

    // 2g: .user.ini in A's web root: open_basedir lifted, B's file prepended.
    as_user(&machine, A, &format!("mkdir -p {web}/ini"));
    put(&machine, A, &format!("{web}/ini/read.php"), reader);
    put(
        &machine,
        A,
        &format!("{web}/ini/.user.ini"),
        &format!("open_basedir = /\nauto_prepend_file = {}/wp-config.php\n", public(B, "bapp")),
    );
    let (_, body) = machine.get("aapp.test", &format!("/ini/read.php?f={other}"));
    verdicts.judge(
        "2g .user.ini open_basedir=/ and B's file prepended",
        !body.contains("aother-secret-77") && !body.contains(SECRET),
        format!("read: {}", short(&body)),
    );

    // 2h: A speaks FastCGI to B's pool socket directly: from A's PHP and from A's shell.
    let fcgi = format!(
        "<?php $s = @stream_socket_client('unix://{b_sock}', $no, $err, 2);\n\
         if (!$s) {{ echo \"connect failed: $err\"; return; }}\n\
         $rec = function ($type, $c) {{ return pack('CCnnCx', 1, $type, 1, strlen($c), 0) . $c; }};\n\
         $p = '';\n\
         foreach (['SCRIPT_FILENAME' => '{0}/x.php', 'REQUEST_METHOD' => 'GET', 'SCRIPT_NAME' => '/x.php'] as $k => $v) {{ $p .= chr(strlen($k)) . chr(strlen($v)) . $k . $v; }}\n\
         fwrite($s, $rec(1, pack('nCx5', 1, 0)) . $rec(4, $p) . $rec(4, '') . $rec(5, ''));\n\
         echo stream_get_contents($s);\n",
        probe.dir()
    );
    put(&machine, A, &format!("{web}/fcgi.php"), &fcgi);
    attack(&mut verdicts, "2h FastCGI to B's socket from A's PHP", "/fcgi.php");
    let out = as_user(&machine, A, &format!("php {web}/fcgi.php"));
    probe.judge(&mut verdicts, "2h FastCGI to B's socket from A's shell", a, &text(&out));
    let www_sock = "/run/php/php8.2-fpm.sock";
    let out = as_user(
        &machine,
        A,
        &format!("sed 's#{b_sock}#{www_sock}#' {web}/fcgi.php > {web}/fcgi-www.php && php {web}/fcgi-www.php"),
    );
    probe.judge(&mut verdicts, "2h FastCGI to the www pool from A's shell", a, &text(&out));

    // 2i: CGI from .htaccess.
    put(&machine, A, &format!("{web}/x.sh"), &probe.shell());
    as_user(&machine, A, &format!("chmod 0755 {web}/x.sh"));
    htaccess("Options +ExecCGI\nAddHandler cgi-script .sh\nRewriteEngine On\nRewriteRule ^go$ x.sh [L]\n");
    attack(&mut verdicts, "2i Options +ExecCGI + AddHandler cgi-script", "/go");
    htaccess("RewriteEngine On\nRewriteRule ^go$ x.sh [L,H=cgi-script]\n");
    attack(&mut verdicts, "2i RewriteRule [H=cgi-script]", "/go");

    // 2j: a Host header of B's domain with A's code: B's site answers with B's code only.
    let (_, body) = machine.get("bapp.test", "/probe.php");
    probe.judge(&mut verdicts, "2j B's Host asking for A's script", uid(&machine, B), &body);
    verdicts.judge(
        "2j B's Host asking for A's script",
        !body.contains(&format!("RAN-AS-{a};")),
        "A's script ran on B's site",
    );
    verdicts.assert_none_worked();
}

/// Attack 3 and its kin: A swaps parts of their home for links to B's app or to /etc,
/// before and while jobs on A's apps run; judged: B's files and /etc keep their owner,
/// mode and contents.
#[test]
fn links_in_the_home_never_redirect_a_jobs_chown_chmod_or_delete() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    victim_site(&machine, "nginx");
    // A's app named like the victim directory one level down its link: B's `public`.
    site(&machine, A, "public", "nginx");
    site(&machine, A, "aapp", "nginx");
    let h = home(A);
    let b_app = app_dir(B, "bapp");
    let b_before = snapshot(&machine, &b_app, 2, true);
    // Judges B's app dir against how it was, then puts it back (the test's own doing)
    // so that each attack is judged on its own.
    let b_intact = |verdicts: &mut Verdicts, attack: &str| {
        let now = snapshot(&machine, &b_app, 2, true);
        verdicts.judge(attack, now == b_before, format!("B's app dir changed:\n{}", diff(&b_before, &now)));
        verdicts.judge(attack, answers(&machine, "bapp.test", "/", "bapp ok"), "B's site no longer answers");
        if now != b_before {
            as_root(&machine, &format!("rm -rf {b_app}/public && mkdir {b_app}/public && chown {B}: {b_app}/public"));
            assert!(success(&create(&machine, B, "bapp", "nginx")));
            victim_site(&machine, "nginx");
            let restored = snapshot(&machine, &b_app, 2, true);
            assert_eq!(restored, b_before, "B's app is restored for the next attack");
        }
    };
    // 3a: ~/apps -> B's app dir, then app.update and app.delete of A's app `public`.
    as_user(&machine, A, &format!("mv {h}/apps {h}/apps.real && ln -s {b_app} {h}/apps"));
    let done = machine.job("app.update", json!({"name": "public", "domains": ["public.test", "www2.public.test"]}));
    eprintln!("3a app.update: {done}");
    b_intact(&mut verdicts, "3a ~/apps -> B's app, app.update");
    let done = machine.job("app.delete", json!({"name": "public"}));
    eprintln!("3a app.delete: {done}");
    b_intact(&mut verdicts, "3a ~/apps -> B's app, app.delete");
    as_user(&machine, A, &format!("rm {h}/apps && mv {h}/apps.real {h}/apps"));

    // 3b: ~/log -> B's app dir, then app.delete of A's app `public` (its log dir is B's web root).
    machine.job("app.delete", json!({"name": "public"}));
    assert!(success(&create(&machine, A, "public", "nginx")));
    as_user(&machine, A, &format!("mv {h}/log {h}/log.real && ln -s {b_app} {h}/log"));
    let done = machine.job("app.delete", json!({"name": "public"}));
    eprintln!("3b app.delete: {done}");
    as_user(&machine, A, &format!("rm {h}/log && mv {h}/log.real {h}/log"));
    b_intact(&mut verdicts, "3b ~/log -> B's app, app.delete");

    // 3c: ~/apps/aapp itself -> B's app dir, before app.update and app.delete.
    as_user(&machine, A, &format!("mv {h}/apps/aapp {h}/aapp.real && ln -s {b_app} {h}/apps/aapp"));
    let done = machine.job("app.update", json!({"name": "aapp", "domains": ["aapp.test"]}));
    eprintln!("3c app.update: {done}");
    b_intact(&mut verdicts, "3c ~/apps/aapp -> B's app, app.update");
    let done = machine.job("app.delete", json!({"name": "aapp"}));
    eprintln!("3c app.delete: {done}");
    b_intact(&mut verdicts, "3c ~/apps/aapp -> B's app, app.delete");
    as_user(&machine, A, &format!("rm -f {h}/apps/aapp; rm -rf {h}/aapp.real"));

    // 3d, the race: A swaps ~/apps/aapp with a symlink to B's app dir in a loop
    // (renameat2 RENAME_EXCHANGE, and keeps its real dir at 0755 so a chmod is due)
    // while berth runs app.create/app.update/app.delete of aapp over and over.
    // On the old code: ~290k-620k swaps during 58-86 jobs in 12 s and no hit observed (the
    // window between lstat and lchown is microseconds); 3a, 3b and 3e show the holes it aims at.
    assert!(success(&create(&machine, A, "aapp", "nginx")));
    let source = machine.dir.path().join("swap.c");
    std::fs::write(&source, SWAPPER).unwrap();
    let binary = machine.path("/srv/swap");
    let built = std::process::Command::new("cc").arg("-O2").arg("-o").arg(&binary).arg(&source).output().unwrap();
    assert!(built.status.success(), "cc: {}", String::from_utf8_lossy(&built.stderr));
    let out = as_user(
        &machine,
        A,
        &format!(
            "ln -s {b_app} {h}/apps/decoy && nohup /srv/swap {h}/apps/aapp {h}/apps/decoy {h}/stop {b_app} > {h}/swaps 2>&1 &"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let started = Instant::now();
    let mut jobs = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let params = json!({"name": "aapp", "domains": ["aapp.test"]});
        machine.job("app.update", params);
        create(&machine, A, "aapp", "nginx");
        jobs += 2;
        if jobs % 6 == 0 {
            machine.job("app.delete", json!({"name": "aapp"}));
            create(&machine, A, "aapp", "nginx");
            jobs += 2;
        }
    }
    let swaps = stop_swapper(&machine, &h);
    eprintln!("3d race: {swaps} swaps during {jobs} jobs in {:?}", started.elapsed());
    b_intact(&mut verdicts, "3d race: ~/apps/aapp <-> link to B's app");

    // 3f, the race on an earlier component: A swaps ~/apps itself with a link to a
    // root-owned directory that holds a directory named like A's app, while berth runs
    // app.update/app.create/app.delete of it over and over. Every call that takes a
    // full path then has about even odds of going through the link: the old code
    // chowned /srv/victim/aapp to A and removed it (measured: 893,677 swaps during 156
    // jobs in 8 s, /srv/victim changed). Judged: the
    // victim directory is unchanged (owner, mode, contents); A's own jobs may fail.
    as_root(&machine, "mkdir -p /srv/victim/aapp && echo keep > /srv/victim/aapp/keep && chmod 0700 /srv/victim/aapp");
    let victim_before = snapshot(&machine, "/srv/victim", 2, true);
    as_user(&machine, A, &format!("rm -f {h}/stop {h}/swaps {h}/apps/decoy; ln -s /srv/victim {h}/decoy"));
    let out =
        as_user(&machine, A, &format!("nohup /srv/swap {h}/apps {h}/decoy {h}/stop /srv/victim > {h}/swaps 2>&1 &"));
    assert!(out.status.success(), "{}", text(&out));
    let started = Instant::now();
    let mut jobs = 0;
    while started.elapsed() < Duration::from_secs(8) {
        machine.job("app.update", json!({"name": "aapp", "domains": ["aapp.test"]}));
        machine.job("app.delete", json!({"name": "aapp"}));
        create(&machine, A, "aapp", "nginx");
        jobs += 3;
    }
    let swaps = stop_swapper(&machine, &h);
    eprintln!("3f race: {swaps} swaps during {jobs} jobs in {:?}", started.elapsed());
    let victim_now = snapshot(&machine, "/srv/victim", 2, true);
    verdicts.judge(
        "3f race: ~/apps <-> link to a root directory",
        victim_now == victim_before,
        format!("/srv/victim:\n{}", diff(&victim_before, &victim_now)),
    );
    // Put A's home back as it was: ~/apps the real directory again.
    as_root(
        &machine,
        &format!("if [ -L {h}/apps ]; then rm -f {h}/apps && mv {h}/decoy {h}/apps; fi; rm -f {h}/decoy"),
    );
    as_root(&machine, "rm -rf /srv/victim");

    // 3e: ~/apps -> /etc, and A's app named `nginx`: app.update, then app.delete.
    let etc_before = snapshot(&machine, "/etc", 1, false);
    let nginx_before = snapshot(&machine, "/etc/nginx", 1, true);
    as_user(&machine, A, &format!("rm -f {h}/apps/decoy {h}/apps/aapp; rm -rf {h}/apps/*"));
    site(&machine, A, "nginx", "nginx");
    as_user(&machine, A, &format!("mv {h}/apps {h}/apps.real && ln -s /etc {h}/apps"));
    let done = machine.job("app.update", json!({"name": "nginx", "domains": ["nginx.test", "www2.nginx.test"]}));
    eprintln!("3e app.update: {done}");
    let now = snapshot(&machine, "/etc/nginx", 1, true);
    verdicts.judge(
        "3e ~/apps -> /etc, app.update",
        now == nginx_before,
        format!("/etc/nginx changed:\n{}", diff(&nginx_before, &now)),
    );
    let done = machine.job("app.delete", json!({"name": "nginx"}));
    eprintln!("3e app.delete: {done}");
    let now = snapshot(&machine, "/etc/nginx", 1, true);
    verdicts.judge(
        "3e ~/apps -> /etc, app.delete",
        now == nginx_before,
        format!("/etc/nginx changed:\n{}", diff(&nginx_before, &now)),
    );
    let now = snapshot(&machine, "/etc", 1, false);
    verdicts.judge("3e ~/apps -> /etc", now == etc_before, format!("/etc changed:\n{}", diff(&etc_before, &now)));
    verdicts.judge("3e ~/apps -> /etc", answers(&machine, "bapp.test", "/", "bapp ok"), "B's site no longer answers");
    verdicts.assert_none_worked();
}

/// Swaps `argv[1]` (the app dir) and `argv[2]` (a symlink to the victim `argv[4]`) with
/// RENAME_EXCHANGE until the stop file `argv[3]` appears, keeping the real directory at
/// 0755 (so a chmod is due) and putting a link back whenever a job removed one; prints
/// the number of swaps.
/// Stops A's swapper (its stop file in A's home `h`) and returns how many swaps it
/// made, which must be many: a race that never ran proves nothing.
fn stop_swapper(machine: &Machine, h: &str) -> u64 {
    as_user(machine, A, &format!("touch {h}/stop"));
    let mut swaps = String::new();
    for _ in 0..50 {
        swaps = std::fs::read_to_string(machine.path(&format!("{h}/swaps"))).unwrap_or_default();
        if !swaps.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let count = swaps.trim().parse::<u64>().unwrap_or(0);
    assert!(count > 1000, "the swapper ran: {swaps}");
    count
}

const SWAPPER: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    const char *app = argv[1], *decoy = argv[2], *stop = argv[3], *victim = argv[4];
    long swaps = 0, i = 0;
    char aside[4096];
    while (access(stop, F_OK) != 0) {
        if (syscall(SYS_renameat2, AT_FDCWD, app, AT_FDCWD, decoy, RENAME_EXCHANGE) == 0) {
            swaps++;
        } else {
            struct stat a, d;
            int ra = lstat(app, &a), rd = lstat(decoy, &d);
            if (rd != 0) {
                if (ra == 0 && S_ISLNK(a.st_mode)) rename(app, decoy); else symlink(victim, decoy);
            } else if (ra != 0 && S_ISDIR(d.st_mode)) {
                rename(decoy, app);
                symlink(victim, decoy);
            }
        }
        struct stat a, d;
        if (lstat(app, &a) == 0 && lstat(decoy, &d) == 0 && S_ISDIR(a.st_mode) && S_ISDIR(d.st_mode)) {
            snprintf(aside, sizeof aside, "%s.%ld", decoy, i);
            rename(decoy, aside);
            symlink(victim, decoy);
        }
        if ((++i & 63) == 0) {
            int real = open(app, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (real >= 0) { fchmod(real, 0755); close(real); }
            real = open(decoy, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (real >= 0) { fchmod(real, 0755); close(real); }
        }
    }
    printf("%ld\n", swaps);
    return 0;
}
"#;

/// Attack 4 and its kin: A links, hard-links or redirects to B's secrets from A's web
/// root and asks nginx and Apache for them; judged: B's secret is never served.
#[test]
fn another_users_secret_is_never_served_through_links_or_redirects() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    victim_site(&machine, "nginx-apache");
    site(&machine, A, "anx", "nginx");
    site(&machine, A, "aap", "nginx-apache");
    let wp = format!("{}/wp-config.php", public(B, "bapp"));
    let private = format!("{}/private.txt", app_dir(B, "bapp"));
    let (nx, ap) = (public(A, "anx"), public(A, "aap"));
    let steal = |verdicts: &mut Verdicts, attack: &str, host: &str, path: &str| {
        let (code, body) = machine.get(host, path);
        verdicts.judge(attack, !body.contains(SECRET), format!("served {code}: {}", short(&body)));
    };
    for web in [&nx, &ap] {
        let out = as_user(
            &machine,
            A,
            &format!(
                "ln -s {wp} {web}/steal.txt && ln -s {private} {web}/private.txt && ln -s {} {web}/bdir && ln -s / {web}/root",
                app_dir(B, "bapp")
            ),
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    // 4a/4b: a symlink in A's web root, served by nginx (both stacks).
    steal(&mut verdicts, "4a symlink to B's wp-config.php, nginx stack", "anx.test", "/steal.txt");
    steal(&mut verdicts, "4a symlink to B's private.txt, nginx stack", "anx.test", "/private.txt");
    steal(&mut verdicts, "4a symlinked dir to B's app, nginx stack", "anx.test", "/bdir/private.txt");
    steal(&mut verdicts, "4a symlink to /, nginx stack", "anx.test", &format!("/root{private}"));
    steal(&mut verdicts, "4b symlink to B's wp-config.php, nginx-apache stack", "aap.test", "/steal.txt");
    steal(&mut verdicts, "4b symlinked dir to B's app, nginx-apache stack", "aap.test", "/bdir/private.txt");

    // 4c: the same links reached through Apache (.htaccess rewrite, ErrorDocument, absolute path).
    put(
        &machine,
        A,
        &format!("{ap}/.htaccess"),
        &format!(
            "RewriteEngine On\nRewriteRule ^via-apache$ steal.txt [L]\nRewriteRule ^via-dir$ bdir/private.txt [L]\n\
             RewriteRule ^via-root$ root{private} [L]\nRewriteRule ^abs$ {private} [L]\n\
             RewriteRule ^abs-wp$ {wp} [L,T=text/plain]\n"
        ),
    );
    steal(&mut verdicts, "4c Apache: rewrite to a symlink to B's file", "aap.test", "/via-apache");
    steal(&mut verdicts, "4c Apache: rewrite into a symlinked dir", "aap.test", "/via-dir");
    steal(&mut verdicts, "4c Apache: rewrite through a symlink to /", "aap.test", "/via-root");
    steal(&mut verdicts, "4c Apache: rewrite to B's absolute path", "aap.test", "/abs");
    steal(&mut verdicts, "4c Apache: rewrite to B's wp-config as text", "aap.test", "/abs-wp");
    put(&machine, A, &format!("{ap}/.htaccess"), "ErrorDocument 404 /steal.txt\n");
    steal(&mut verdicts, "4c Apache: ErrorDocument -> symlink to B's file", "aap.test", "/nothing-here");

    // 4d: X-Accel-Redirect from A's PHP (nginx follows it internally) and from .htaccess.
    put(&machine, A, &format!("{nx}/accel.php"), "<?php header('X-Accel-Redirect: ' . $_GET['to']);");
    put(&machine, A, &format!("{ap}/accel.php"), "<?php header('X-Accel-Redirect: ' . $_GET['to']);");
    steal(
        &mut verdicts,
        "4d X-Accel-Redirect from PHP to a symlink, nginx stack",
        "anx.test",
        "/accel.php?to=/steal.txt",
    );
    steal(
        &mut verdicts,
        "4d X-Accel-Redirect from PHP to a symlink, nginx-apache stack",
        "aap.test",
        "/accel.php?to=/steal.txt",
    );
    steal(&mut verdicts, "4d X-Accel-Redirect from PHP to B's path", "anx.test", &format!("/accel.php?to={private}"));
    put(&machine, A, &format!("{ap}/.htaccess"), "Header set X-Accel-Redirect /steal.txt\n");
    steal(&mut verdicts, "4d X-Accel-Redirect from .htaccess", "aap.test", "/nothing-here");
    as_user(&machine, A, &format!("rm {ap}/.htaccess"));

    // 4e: a hard link to B's file (A cannot even reach it; nothing may be served).
    let out = as_user(&machine, A, &format!("ln {wp} {nx}/hard.txt; ln {private} {ap}/hard.txt"));
    eprintln!("4e hard links: {}", text(&out));
    steal(&mut verdicts, "4e hard link to B's file, nginx stack", "anx.test", "/hard.txt");
    steal(&mut verdicts, "4e hard link to B's file, nginx-apache stack", "aap.test", "/hard.txt");

    // 4f: the web root itself becomes a symlink: to B's app dir, to /.
    for (target, path) in [(app_dir(B, "bapp"), "/private.txt".to_owned()), ("/".to_owned(), private.clone())] {
        for (app, host) in [("anx", "anx.test"), ("aap", "aap.test")] {
            let web = public(A, app);
            as_user(&machine, A, &format!("mv {web} {web}.real && ln -s {target} {web}"));
            steal(&mut verdicts, &format!("4f web root -> {target}, {app}"), host, &path);
            let done = machine.job("app.update", json!({"name": app, "domains": [host]}));
            eprintln!("4f app.update with the web root -> {target}: {done}");
            steal(&mut verdicts, &format!("4f web root -> {target}, {app}, after app.update"), host, &path);
            as_user(&machine, A, &format!("rm {web}; mv {web}.real {web}"));
        }
    }
    verdicts.judge("4 B's site", answers(&machine, "bapp.test", "/", "bapp ok"), "B's site no longer answers");
    verdicts.assert_none_worked();
}

/// Attack 5 and its kin: A wrecks their own home (deletes or locks the log directory,
/// empties the home, plants a fifo or a file where a log goes); judged: B's app.create
/// succeeds in bounded time, B's sites answer, and `berth reconcile` brings A's site back.
#[test]
fn one_user_wrecking_their_home_breaks_no_one_else() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    site(&machine, B, "bapp", "nginx-apache");
    let h = home(A);
    let index = format!("{}/index.php", public(A, "aapp"));
    let mut n = 0;
    let mut after = |verdicts: &mut Verdicts, attack: &str, republish: bool| {
        n += 1;
        let name = format!("bnew{n}");
        match job_within(
            &machine,
            60,
            "app.create",
            json!({"name": name, "sysuser": B, "runtime": "php8.2", "domains": [format!("{name}.test")], "stack": "nginx-apache"}),
        ) {
            None => verdicts.judge(attack, false, "B's app.create did not finish within 60 s"),
            Some(done) => verdicts.judge(attack, success(&done), format!("B's app.create: {done}")),
        }
        put(&machine, B, &format!("{}/index.php", public(B, &name)), "<?php echo 'new ok';");
        verdicts.judge(
            attack,
            answers(&machine, &format!("{name}.test"), "/", "new ok"),
            "B's new site does not answer",
        );
        verdicts.judge(attack, answers(&machine, "bapp.test", "/", "bapp ok"), "B's site no longer answers");
        let test = machine.run("/usr/bin/timeout", &["-s", "KILL", "20", "/usr/sbin/nginx", "-t"]);
        verdicts.judge(attack, test.status.success(), format!("nginx -t: {}", text(&test)));
        let reconciled = machine.run(
            "/usr/bin/timeout",
            &[
                "-s",
                "KILL",
                "60",
                env!("CARGO_BIN_EXE_berth"),
                "reconcile",
                "--config",
                machine.config().to_str().unwrap(),
            ],
        );
        eprintln!(
            "{attack}: reconcile {:?}: {}",
            reconciled.status.code(),
            String::from_utf8_lossy(&reconciled.stdout)
        );
        if republish {
            as_user(&machine, A, &format!("mkdir -p {}", public(A, "aapp")));
            put(&machine, A, &index, "<?php echo 'aapp ok';");
        }
        verdicts.judge(
            attack,
            answers(&machine, "aapp.test", "/", "aapp ok"),
            "A's site does not answer after reconcile",
        );
    };

    // 5a: A deletes their log directory.
    as_user(&machine, A, &format!("rm -rf {h}/log"));
    after(&mut verdicts, "5a ~/log deleted", false);
    // 5b: A makes their log directories unreadable.
    as_user(&machine, A, &format!("chmod 000 {h}/log/* {h}/log"));
    after(&mut verdicts, "5b ~/log chmod 000", false);
    as_user(&machine, A, &format!("chmod 750 {h}/log; chmod 750 {h}/log/*"));
    // 5c: A locks their apps directory.
    as_user(&machine, A, &format!("chmod 000 {h}/apps"));
    after(&mut verdicts, "5c ~/apps chmod 000", false);
    as_user(&machine, A, &format!("chmod 750 {h}/apps"));
    // 5d: A empties their home.
    as_user(&machine, A, &format!("rm -rf {h}/* {h}/.[!.]*"));
    after(&mut verdicts, "5d home emptied", true);
    // 5e: a regular file where A's log directory was.
    as_user(&machine, A, &format!("rm -rf {h}/log/aapp && echo x > {h}/log/aapp"));
    after(&mut verdicts, "5e a file in place of the app's log dir", false);
    as_user(&machine, A, &format!("rm -f {h}/log/aapp"));
    // 5f (last: a server stuck on a fifo stays stuck): fifos in place of the log files.
    let out = as_user(
        &machine,
        A,
        &format!(
            "mkdir -p {h}/log/aapp && cd {h}/log/aapp && for f in * nginx.access.log nginx.error.log apache.access.log apache.error.log; \
             do rm -f \"$f\"; mkfifo \"$f\"; done"
        ),
    );
    eprintln!("5f: {}", text(&out));
    after(&mut verdicts, "5f fifos in place of log files", false);
    verdicts.assert_none_worked();
}

/// Attack 6 and its kin: a name comes back after delete (sysuser and app), and links
/// planted in the home when `sysuser.delete` runs reach nothing; judged: the re-create
/// succeeds and serves, /etc/nginx survives.
#[test]
fn names_are_reused_after_delete_and_links_in_a_deleted_home_reach_nothing() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "dapp", "nginx-apache");
    let nginx_before = snapshot(&machine, "/etc/nginx", 1, true);
    let h = home(A);
    let out = as_user(
        &machine,
        A,
        &format!(
            "ln -s /etc {h}/etc && ln -s /etc/nginx {}/nginx && rm -rf {h}/log && ln -s /etc/nginx {h}/log && ln -s /etc {h}/apps/etc",
            public(A, "dapp")
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let done = machine.job("sysuser.delete", json!({"name": A}));
    verdicts.judge("6 sysuser.delete", success(&done), format!("{done}"));
    let now = snapshot(&machine, "/etc/nginx", 1, true);
    verdicts.judge(
        "6 links in the home at sysuser.delete",
        now == nginx_before,
        format!("/etc/nginx:\n{}", diff(&nginx_before, &now)),
    );

    let again = machine.job("sysuser.create", json!({"name": A}));
    verdicts.judge("6 sysuser.create after sysuser.delete", success(&again), format!("{again}"));
    if success(&again) {
        let app = create(&machine, A, "dapp", "nginx-apache");
        verdicts.judge("6 app.create after sysuser re-create", success(&app), format!("{app}"));
        if success(&app) {
            put(&machine, A, &format!("{}/index.php", public(A, "dapp")), "<?php echo 'dapp again';");
            verdicts.judge(
                "6 app.create after sysuser re-create",
                answers(&machine, "dapp.test", "/", "dapp again"),
                "not served",
            );
        }
    }
    // An app name moves from one user to another.
    let shared = create(&machine, B, "shared", "nginx");
    assert!(success(&shared), "{shared}");
    let gone = machine.job("app.delete", json!({"name": "shared"}));
    verdicts.judge("6 app.delete", success(&gone), format!("{gone}"));
    if exists(&machine, &home(A)) {
        let moved = create(&machine, A, "shared", "nginx");
        verdicts.judge("6 app name reused by another user", success(&moved), format!("{moved}"));
    }
    verdicts.assert_none_worked();
}

/// PHP state shared through /tmp, certificate keys and berth's own files: A plants a
/// session B's app trusts, reads B's temp files, reads certificate keys; judged: B's
/// app does not take A's session, A reads none of B's temp data nor any key.
#[test]
fn php_state_and_keys_stay_private() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx");
    victim_site(&machine, "nginx");
    let (a_web, b_web) = (public(A, "aapp"), public(B, "bapp"));
    // B's app: sessions, and a cache file in its temp dir (as many PHP apps write).
    put(
        &machine,
        B,
        &format!("{b_web}/sess.php"),
        "<?php session_id($_GET['sid']); session_start(); echo 'ROLE=', $_SESSION['role'] ?? 'none', ';DIR=', session_save_path() ?: sys_get_temp_dir(), ';';",
    );
    put(
        &machine,
        B,
        &format!("{b_web}/cache.php"),
        &format!("<?php $f = sys_get_temp_dir() . '/bapp-cache.txt'; file_put_contents($f, '{SECRET}'); echo $f;"),
    );
    // A's reader, from PHP and from the shell.
    put(&machine, A, &format!("{a_web}/read.php"), "<?php echo 'READ:', @file_get_contents($_GET['f']) ?: 'denied';");
    let read = |path: &str| {
        let (_, body) = machine.get("aapp.test", &format!("/read.php?f={path}"));
        let shell = text(&as_user(&machine, A, &format!("cat {path}")));
        format!("{body}\n{shell}")
    };

    // 7a: session injection: A plants sess_ID in the directory B's sessions live in.
    let body = machine.eventually_get("bapp.test", "/sess.php?sid=probe1", 200);
    let dir = body.split("DIR=").nth(1).and_then(|r| r.split(';').next()).unwrap_or("").to_owned();
    eprintln!("B's session dir: {dir:?}");
    let sid = format!("attack{}", std::process::id());
    let planted = as_user(
        &machine,
        A,
        &format!("printf 'role|s:5:\"admin\";' > {dir}/sess_{sid} && chmod 0666 {dir}/sess_{sid}"),
    );
    eprintln!("7a plant: {}", text(&planted));
    let (_, body) = machine.get("bapp.test", &format!("/sess.php?sid={sid}"));
    verdicts.judge(
        "7a A's planted session taken by B's app",
        !body.contains("ROLE=admin"),
        format!("B's app answered: {body}"),
    );
    as_root(&machine, &format!("rm -f {dir}/sess_{sid} {dir}/sess_probe1"));

    // 7b: B's app writes a file into its temp dir; A reads it. (The file must be
    // there, in B's own temp directory, or the read proves nothing.)
    let (_, cache) = machine.get("bapp.test", "/cache.php");
    let own_tmp = format!("{}/tmp/bapp/", home(B));
    verdicts.judge(
        "7b B's temp files and sessions in B's own temp directory",
        cache.trim().starts_with(&own_tmp)
            && exists(&machine, cache.trim())
            && dir.starts_with(own_tmp.trim_end_matches('/')),
        format!("temp file {cache:?}, session directory {dir:?}"),
    );
    let got = read(cache.trim());
    verdicts.judge("7b A reads B's temp file", !got.contains(SECRET), format!("read {cache}: {}", short(&got)));
    as_root(&machine, &format!("rm -f {}", cache.trim()));

    // 7c: certificate keys and berth's config and state.
    let ca = support::pki::TestCa::new("attack CA");
    let (cert, key) = ca.leaf(&["bapp.test", "www.bapp.test"], support::pki::Validity::normal());
    let done = machine.job("ssl.install", json!({"app": "bapp", "key": key, "cert": cert}));
    assert!(success(&done), "{done}");
    let key_line = key.lines().nth(1).unwrap().to_owned();
    let found = text(&as_user(
        &machine,
        A,
        "find /etc/berth /etc/ssl/private /etc/nginx /etc/apache2 -name '*.pem' -o -name '*.key' 2>/dev/null",
    ));
    let mut read_any = String::new();
    for path in found.lines().chain(["/etc/berth/ssl/bapp/key.pem"]) {
        read_any.push_str(&read(path));
    }
    verdicts.judge("7c A reads B's certificate key", !read_any.contains(&key_line), "the key was read");
    verdicts.assert_none_worked();
}

/// Past nginx: any user on the server can connect to Apache on 127.0.0.1:81 and
/// name another app's Host, where nginx's rules (dotfiles refused, PHP run, never
/// shown) do not apply; and the key nginx proves itself with is in files. Judged: a
/// request to Apache without nginx's key gets none of B's files (its `.env`, its
/// `wp-config.php` source, a plain file), a forged key does no better, and A can
/// read neither file that holds the key; B's site still answers through nginx.
#[test]
fn apache_answers_nginx_alone_and_its_key_stays_root_s() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    victim_site(&machine, "nginx-apache");
    put(&machine, B, &format!("{}/.env", public(B, "bapp")), &format!("DB_PASSWORD={SECRET}"));
    put(&machine, B, &format!("{}/plain.txt", public(B, "bapp")), &format!("plain {SECRET}"));
    let direct = |path: &str, header: &str| -> String {
        let header = if header.is_empty() { String::new() } else { format!("-H '{header}'") };
        text(&as_user(&machine, A, &format!("curl -s -i -H 'Host: bapp.test' {header} http://127.0.0.1:81{path}")))
    };
    for path in ["/.env", "/wp-config.php", "/plain.txt", "/"] {
        let response = direct(path, "");
        verdicts.judge(
            &format!("8a Apache directly, no key: {path}"),
            !response.contains(SECRET) && response.starts_with("HTTP/1.1 403"),
            short(&response),
        );
        let forged = direct(path, "X-Berth-Proxy: 0123456789abcdef0123456789abcdef0123456789abcdef");
        verdicts.judge(
            &format!("8b Apache directly, forged key: {path}"),
            !forged.contains(SECRET) && forged.starts_with("HTTP/1.1 403"),
            short(&forged),
        );
    }
    // A's PHP tries the same from inside the server.
    let peek = "<?php $s = @fsockopen('127.0.0.1', 81); if (!$s) { die('no socket'); } \
        fwrite($s, \"GET /wp-config.php HTTP/1.0\\r\\nHost: bapp.test\\r\\n\\r\\n\"); echo stream_get_contents($s);";
    put(&machine, A, &format!("{}/peek.php", public(A, "aapp")), peek);
    let (_, body) = machine.get("aapp.test", "/peek.php");
    verdicts.judge(
        "8c A's PHP to Apache directly",
        !body.contains(SECRET) && body.starts_with("HTTP/1.1 403"),
        short(&body),
    );
    for file in [
        "/etc/berth/web-proxy.key",
        "/etc/nginx/snippets/berth-apache-proxy.conf",
        "/etc/apache2/conf-enabled/berth.conf",
    ] {
        let read = as_user(&machine, A, &format!("cat {file}"));
        verdicts.judge(&format!("8d A reads {file}"), !read.status.success(), text(&read));
    }
    verdicts.judge("8e B's site through nginx", answers(&machine, "bapp.test", "/plain.txt", "plain"), "not served");
    verdicts.assert_none_worked();
}

/// The responses A gets through nginx from A's own site (`curl -i` as A, headers
/// included), or directly from Apache with `headers`.
fn curl_as(machine: &Machine, user: &str, url: &str, host: &str, headers: &[&str]) -> String {
    let extra: String = headers.iter().map(|h| format!(" -H '{h}'")).collect();
    text(&as_user(machine, user, &format!("curl -s -i --max-time 10 -H 'Host: {host}'{extra} '{url}'")))
}

/// The first run of 48 hex digits in `s` (the form of berth's proxy key).
fn hex48(s: &str) -> Option<String> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(47))
        .find(|&i| {
            b[i..i + 48].iter().all(u8::is_ascii_hexdigit) && (i + 48 == b.len() || !b[i + 48].is_ascii_hexdigit())
        })
        .map(|i| s[i..i + 48].to_owned())
}

/// Red team finding (fixed; this pins it): A's `.htaccess` makes Apache reflect the key
/// nginx proves itself with (`X-Berth-Proxy`) back to A: `Header echo`, `Header set`
/// of the request header, a rewrite into a redirect's `Location`. With the key, A
/// talks to Apache on 127.0.0.1:81 directly as B's Host, past nginx's rules, and
/// reads B's `.env` and the source of B's `wp-config.php`. Judged: no response to A
/// carries the key, and no direct request with what A got serves B's secret.
#[test]
fn redteam_htaccess_cannot_reflect_the_proxy_key() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    victim_site(&machine, "nginx-apache");
    put(&machine, B, &format!("{}/.env", public(B, "bapp")), &format!("DB_PASSWORD={SECRET}"));
    let key = text(&as_root(&machine, "cat /etc/berth/web-proxy.key")).trim().to_owned();
    assert_eq!(key.len(), 48, "the key: {key}");
    let web = public(A, "aapp");
    put(&machine, A, &format!("{web}/page.txt"), "a page");
    // Every path below is no file in A's web root, so nginx hands it to Apache.
    let mut leaked: Vec<String> = Vec::new();
    for (attack, htaccess, path) in [
        ("9a Header echo", "RewriteEngine On\nRewriteRule ^page$ page.txt [L]\nHeader echo ^X-Berth\n", "/page"),
        (
            "9b Header set from the request header",
            "RewriteEngine On\nRewriteRule ^page$ page.txt [L]\nHeader always set X-Leak \"%{X-Berth-Proxy}i\"\n",
            "/page",
        ),
        (
            "9c RewriteRule redirect carrying the header",
            "RewriteEngine On\nRewriteCond %{HTTP:X-Berth-Proxy} (.+)\nRewriteRule ^go$ /page.txt?k=%1 [R=302,L]\n",
            "/go",
        ),
        ("9d ErrorDocument expression", "ErrorDocument 404 \"k=%{HTTP:X-Berth-Proxy}\"\n", "/nothing-here"),
    ] {
        put(&machine, A, &format!("{web}/.htaccess"), htaccess);
        let response = curl_as(&machine, A, &format!("http://127.0.0.1{path}"), "aapp.test", &[]);
        verdicts.judge(attack, !response.contains(&key), format!("the key came back to A: {}", short(&response)));
        leaked.extend(hex48(&response).filter(|k| *k == key));
    }
    as_user(&machine, A, &format!("rm -f {web}/.htaccess"));
    // What A does with what it got: Apache directly, as B's Host.
    for found in leaked.iter().take(1) {
        for path in ["/.env", "/wp-config.php"] {
            let response = curl_as(
                &machine,
                A,
                &format!("http://127.0.0.1:81{path}"),
                "bapp.test",
                &[&format!("X-Berth-Proxy: {found}")],
            );
            verdicts.judge(
                &format!("9e Apache directly with the reflected key: B's {path}"),
                !response.contains(SECRET),
                format!("served: {}", short(&response)),
            );
        }
    }
    verdicts.assert_none_worked();
}

/// A raw HTTP/1.1 request from A's shell to nginx on port 80: `target` as the request
/// line has it (absolute-form allowed), `host` as the Host header.
fn raw_get_as(machine: &Machine, user: &str, target: &str, host: &str) -> String {
    let target = target.replace('%', "%%");
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/80 || exit 3; printf 'GET {target} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n' >&3; timeout 10 cat <&3"
    );
    text(&as_user(machine, user, &format!("exec /bin/bash -c \"{}\"", script.replace('"', "\\\""))))
}

/// HOLE (red team, fails until fixed, on hosts whose `/etc/nginx/proxy_params` passes
/// `Host $http_host`: Ubuntu's, and Debian's before its 2025 update): nginx picks B's
/// server block by the request line (`GET http://bapp.test/...`) but hands Apache the
/// client's Host header (`aapp.test`), so A's Apache vhost answers for B's server
/// block; its `X-Accel-Redirect: @php` then runs B's script of that path in B's pool.
/// B's `.htaccess` (which denies `/admin/` to everyone) never sees the request. berth
/// includes the distribution's `proxy_params` instead of setting Host itself.
/// Judged: B's denied script never answers A, with either `proxy_params`.
#[test]
fn redteam_request_line_host_cannot_route_b_s_block_through_a_s_apache_vhost() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    victim_site(&machine, "nginx-apache");
    let b_admin = format!("{}/admin", public(B, "bapp"));
    as_user(&machine, B, &format!("mkdir -p {b_admin}"));
    put(&machine, B, &format!("{b_admin}/.htaccess"), "Require all denied\n");
    put(&machine, B, &format!("{b_admin}/secret.php"), &format!("<?php echo 'ADMIN:{SECRET}';"));
    // B's rule holds for a plain request.
    let (code, body) = machine.get("bapp.test", "/admin/secret.php");
    assert!(code == 403 && !body.contains(SECRET), "B's .htaccess denies /admin/: {code} {body}");
    // A mirrors the path in its own web root: any content will do.
    as_user(&machine, A, &format!("mkdir -p {}/admin", public(A, "aapp")));
    put(&machine, A, &format!("{}/admin/secret.php", public(A, "aapp")), "<?php echo 'A';");
    let attack = |verdicts: &mut Verdicts, name: &str| {
        let response = raw_get_as(&machine, A, "http://bapp.test/admin/secret.php", "aapp.test");
        verdicts.judge(name, !response.contains(SECRET), format!("B's denied script answered: {}", short(&response)));
    };
    attack(&mut verdicts, "10a absolute-form request line, this host's proxy_params");
    // The same host with the proxy_params Ubuntu (and Debian before 2025) ships.
    let params = text(&as_root(&machine, "cat /etc/nginx/proxy_params"));
    eprintln!(
        "this host's proxy_params sets: {:?}",
        params.lines().filter(|l| l.starts_with("proxy_set_header Host")).collect::<Vec<_>>()
    );
    let out = as_root(
        &machine,
        "printf 'proxy_set_header Host $http_host;\\nproxy_set_header X-Real-IP $remote_addr;\\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\\nproxy_set_header X-Forwarded-Proto $scheme;\\n' \
         > /etc/nginx/proxy_params && nginx -t && nginx -s reload && sleep 1",
    );
    assert!(out.status.success(), "{}", text(&out));
    attack(&mut verdicts, "10b absolute-form request line, Ubuntu's proxy_params");
    verdicts.assert_none_worked();
}

/// Red team finding (fixed; this pins it): a user about to be deleted leaves a directory
/// chain deeper than `host::tree::MAX_DEPTH` (1,100 levels of `mkdir d; cd d`) in
/// their home. `sysuser.delete` removes the apps, runs `userdel` and `groupdel`, then
/// fails on the home: the job ends in `internal`, the home stays, owned by a uid that
/// no longer exists, and a later attempt fails the same way. The next account created
/// gets that uid (useradd hands out the highest + 1, which was A's), and with it A's
/// leftover files. Judged: `sysuser.delete` succeeds and removes the home; the next
/// user can read nothing A left.
#[test]
fn redteam_a_deep_tree_does_not_keep_a_deleted_home_for_the_next_uid() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, B);
    sysuser(&machine, A);
    site(&machine, A, "aapp", "nginx");
    let h = home(A);
    let old_uid = uid(&machine, A);
    put(&machine, A, &format!("{}/notes.txt", app_dir(A, "aapp")), "derek-left-this-behind");
    let out = as_user(
        &machine,
        A,
        &format!("mkdir {h}/deep && cd {h}/deep && i=0; while [ $i -lt 1100 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; echo deep"),
    );
    assert!(text(&out).contains("deep"), "{}", text(&out));
    put(&machine, A, &format!("{h}/keep.txt"), "derek-left-this-behind");
    let started = Instant::now();
    let done = machine.job("sysuser.delete", json!({"name": A}));
    eprintln!("sysuser.delete in {:?}: {}", started.elapsed(), short(&done.to_string()));
    verdicts.judge("11a sysuser.delete with a deep tree", success(&done), short(&done.to_string()));
    verdicts.judge("11a sysuser.delete with a deep tree", !exists(&machine, &h), format!("{h} is left behind"));
    let again = machine.job("sysuser.delete", json!({"name": A}));
    verdicts.judge("11b sysuser.delete again", success(&again) && !exists(&machine, &h), short(&again.to_string()));
    // The next account: same uid, and whatever A left is now its.
    let next = "carol";
    sysuser(&machine, next);
    let new_uid = uid(&machine, next);
    let read = as_user(&machine, next, &format!("cat {h}/keep.txt {h}/apps/aapp/notes.txt 2>/dev/null"));
    verdicts.judge(
        "11c the next user gets A's uid and A's leftovers",
        !text(&read).contains("derek-left-this-behind"),
        format!("{next} (uid {new_uid}, A's was {old_uid}) reads: {}", short(&text(&read))),
    );
    verdicts.assert_none_worked();
}

/// Binds `127.0.0.1:81` as soon as it is free (polling every 5 ms), writes `bound`
/// to `argv[0]`, then answers every connection with `SQUATTED`, appending the request
/// headers it got to `argv[1]`.
const SQUATTER: &str = r#"
use IO::Socket::INET;
my ($flag, $caught) = @ARGV;
my $s;
until ($s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 81, Listen => 16, ReuseAddr => 1)) {
    select(undef, undef, undef, 0.005);
}
open(my $b, '>', $flag); print $b "bound\n"; close $b;
while (my $c = $s->accept) {
    my $req = '';
    while (my $l = <$c>) { $req .= $l; last if $l eq "\r\n"; }
    open(my $f, '>>', $caught); print $f $req; close $f;
    print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nSQUATTED\n";
    close $c;
}
"#;

/// Red team finding (fixed; this pins it): Apache listens on an unprivileged port
/// (127.0.0.1:81), which any user may bind while Apache is not holding it: at boot
/// (a crontab `@reboot` line), or while it restarts (a package upgrade, an admin's
/// `systemctl restart`, berth's own `service.restart`). A's process waits for the
/// port; Apache stops (here: `service.restart`) and cannot bind it again. From then
/// on nginx sends every nginx-apache request of every user to A's process, with the
/// key and B's visitors' headers (cookies, `Authorization`), and A answers for B's
/// site; and every later web-config job fails starting Apache. Judged: B's
/// `app.create` succeeds, A's process gets no request, B's site is not A's answer.
#[test]
fn redteam_apache_s_port_cannot_be_squatted_by_a_user() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    site(&machine, A, "aapp", "nginx-apache");
    victim_site(&machine, "nginx-apache");
    let h = home(A);
    put(&machine, A, &format!("{h}/squat.pl"), SQUATTER);
    let out = as_user(&machine, A, &format!("nohup perl {h}/squat.pl {h}/bound {h}/caught > /dev/null 2>&1 &"));
    assert!(out.status.success(), "{}", text(&out));
    // Apache restarts: berth's own `service.restart` (a package upgrade, a reboot or
    // an admin's `systemctl restart apache2` open the same window).
    let restarted = machine.job("service.restart", json!({"service": "apache"}));
    eprintln!("service.restart apache: {}", short(&restarted.to_string()));
    let bound = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        exists(&machine, &format!("{h}/bound"))
    });
    eprintln!("A's process bound 127.0.0.1:81: {bound}");
    let done = create(&machine, B, "bnew", "nginx-apache");
    verdicts.judge("12a B's app.create after the restart", success(&done), short(&done.to_string()));
    let response = raw_get_as(&machine, B, "/wp-config.php", "bapp.test")
        + &raw_get_as(&machine, B, "/page?session=1", "bapp.test");
    verdicts.judge("12b B's site answered by A's process", !response.contains("SQUATTED"), short(&response));
    let caught = text(&as_root(&machine, &format!("cat {h}/caught 2>/dev/null")));
    verdicts.judge(
        "12c nginx's requests (and the key) reach A's process",
        !caught.contains("X-Berth-Proxy"),
        format!("A's process got: {}", short(&caught)),
    );
    verdicts.assert_none_worked();
}

/// Red team finding (fixed; this pins it): `sysuser.delete` frees the user's uid, and
/// `useradd` hands the highest + 1 to the next account, which was A's. Whatever A
/// left outside the home keeps that uid: here a setuid copy of a shell in the shared
/// `/tmp` (any user may write there). Once the next account exists, anyone who runs
/// A's leftover (B here, or A through any other account) runs as the new user and
/// reads their files. Judged: the new user's secret is read by no one else.
#[test]
fn redteam_a_deleted_user_s_uid_does_not_pass_to_the_next_user() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    let probe = Probe::new();
    sysuser(&machine, B);
    sysuser(&machine, A);
    site(&machine, A, "aapp", "nginx");
    let old_uid = uid(&machine, A);
    let shell = format!("{}/ashell", probe.dir());
    let out = as_user(&machine, A, &format!("cp /bin/bash {shell} && chmod 4755 {shell} && ls -l {shell}"));
    assert!(out.status.success(), "{}", text(&out));
    let done = machine.job("sysuser.delete", json!({"name": A}));
    assert!(success(&done), "{done}");
    let next = "carol";
    sysuser(&machine, next);
    let new_uid = uid(&machine, next);
    let secret = format!("{}/secret.txt", home(next));
    put(&machine, next, &secret, "carol-secret-9191");
    as_user(&machine, next, &format!("chmod 0600 {secret}"));
    let read = as_user(&machine, B, &format!("{shell} -p -c 'id -u; cat {secret}'"));
    verdicts.judge(
        "14a A's setuid leftover in /tmp runs as the next user",
        !text(&read).contains("carol-secret-9191"),
        format!("{next} has uid {new_uid} (A's was {old_uid}); B ran A's leftover: {}", short(&text(&read))),
    );
    verdicts.assert_none_worked();
}

/// Red team finding (fixed; this pins it): with `deny_unknown_domains` off, B's app (the
/// first created) is nginx's default server, and nginx hands Apache the Host it got;
/// for a name no vhost has (the server's IP address, any unknown name) Apache answers
/// with its own default vhost, the first file in `sites-enabled`: A's app `aaa`. Its
/// `X-Accel-Redirect: @php` for a path A mirrors then runs B's script of that path in
/// B's pool, from B's server block; B's `.htaccess` (which denies `/admin/`) never
/// sees the request. Judged: B's denied script never answers.
#[test]
fn redteam_unknown_host_on_b_s_default_server_is_not_answered_by_a_s_apache_vhost() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    sysuser(&machine, B);
    victim_site(&machine, "nginx-apache");
    site(&machine, A, "aaa", "nginx-apache");
    let done = machine.job("server.update", json!({"deny_unknown_domains": false}));
    assert!(success(&done), "{done}");
    let b_admin = format!("{}/admin", public(B, "bapp"));
    as_user(&machine, B, &format!("mkdir -p {b_admin}"));
    put(&machine, B, &format!("{b_admin}/.htaccess"), "Require all denied\n");
    put(&machine, B, &format!("{b_admin}/secret.php"), &format!("<?php echo 'ADMIN:{SECRET}';"));
    machine.eventually_get("unknown.test", "/", 200);
    let (code, body) = machine.get("bapp.test", "/admin/secret.php");
    assert!(code == 403 && !body.contains(SECRET), "B's .htaccess denies /admin/: {code} {body}");
    as_user(&machine, A, &format!("mkdir -p {}/admin", public(A, "aaa")));
    put(&machine, A, &format!("{}/admin/secret.php", public(A, "aaa")), "<?php echo 'A';");
    for host in ["203.0.113.7", "unknown.test"] {
        let (code, body) = machine.get(host, "/admin/secret.php");
        verdicts.judge(
            &format!("15 Host {host} on B's default server, A's Apache vhost"),
            !body.contains(SECRET),
            format!("B's denied script answered {code}: {}", short(&body)),
        );
    }
    verdicts.assert_none_worked();
}

/// Regression: a link A plants in place of `~/apps` (or `~/tmp`) made `app.delete`
/// end in `conflict` after the app's config was already gone, and every retry the
/// same; `sysuser.delete` removes the user's apps first, so A could never be evicted.
/// Judged: `app.delete` and `sysuser.delete` succeed, and the links' target (a root
/// directory holding a directory named like A's app) is untouched.
#[test]
fn a_link_in_place_of_apps_never_keeps_a_user_from_being_deleted() {
    let machine = Machine::start();
    let mut verdicts = Verdicts::new();
    sysuser(&machine, A);
    site(&machine, A, "aapp", "nginx");
    site(&machine, A, "aother", "nginx");
    as_root(&machine, "mkdir -p /srv/victim/aapp /srv/victim/aother && echo keep > /srv/victim/aapp/keep");
    let victim_before = snapshot(&machine, "/srv/victim", 2, true);
    let h = home(A);
    let out = as_user(
        &machine,
        A,
        &format!(
            "mv {h}/apps {h}/apps.real && ln -s /srv/victim {h}/apps && rm -rf {h}/tmp && ln -s /srv/victim {h}/tmp"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let gone = machine.job("app.delete", json!({"name": "aapp"}));
    verdicts.judge("17a app.delete with ~/apps a link", success(&gone), short(&gone.to_string()));
    let evicted = machine.job("sysuser.delete", json!({"name": A}));
    verdicts.judge("17b sysuser.delete with ~/apps a link", success(&evicted), short(&evicted.to_string()));
    verdicts.judge("17c the user is gone", !exists(&machine, &h), format!("{h} is still there"));
    let victim_now = snapshot(&machine, "/srv/victim", 2, true);
    verdicts.judge(
        "17d the links' target",
        victim_now == victim_before,
        format!("/srv/victim:\n{}", diff(&victim_before, &victim_now)),
    );
    verdicts.assert_none_worked();
}
