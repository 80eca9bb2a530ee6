//! The config transaction against the real nginx, run from a sandbox prefix on a
//! loopback port: a good vhost is served, a broken one is refused by `nginx -t`
//! and the previous files come back while the other site keeps answering.

mod support;

use std::path::Path;

use berth::host::services::Service;
use berth::host::transaction::{apply, Applied, FileChange};
use berth::job::JobError;
use berth::model::protocol::ErrorCode;
use support::servers::Nginx;

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
    let broken = FileChange::write(
        nginx.path("b.test.conf"),
        "server { listen 1.2.3.4:80; bogus_directive on; }",
        0o644,
        Service::Nginx,
    );
    let err = JobError::from(apply(&host, &services, &[nginx.site("a.test", "site A, changed"), broken]).unwrap_err());
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    assert!(err.to_string().contains("bogus_directive"), "the tool's words: {err}");
    assert!(!nginx.path("b.test.conf").exists());
    assert!(std::fs::read_to_string(nginx.path("a.test.conf")).unwrap().contains("\"site A\""));
    nginx.answers("a.test", "site A");

    // Removing the site is a change too.
    apply(&host, &services, &[FileChange::remove(nginx.path("a.test.conf"), Service::Nginx)]).unwrap();
    assert!(!Path::new(&nginx.path("a.test.conf")).exists());
}

/// The built-in templates, rendered for a sandbox, pass each server's own check:
/// nginx through the transaction, PHP-FPM and Apache on minimal configs.
#[test]
fn builtin_templates_pass_the_servers_own_checks() {
    use berth::web::templates::Templates;
    let nginx = Nginx::start();
    let root = nginx.root.path();
    let app_dir = root.join("srv/users/derek/apps/gallery");
    std::fs::create_dir_all(app_dir.join("public")).unwrap();
    std::fs::create_dir_all(root.join("var/log/berth/derek/gallery")).unwrap();
    let templates = Templates::load(Path::new("/nonexistent-root")).unwrap();
    let apache_port = support::servers::free_port();
    let mut context = tera::Context::new();
    context.insert("app", "gallery");
    context.insert("user", "www-data");
    context.insert("web_user", "www-data");
    context.insert("http_listen", &format!("127.0.0.1:{}", nginx.port));
    context.insert("http_listen_v6", &format!("[::1]:{}", nginx.port));
    context.insert("server_names", &["example.com", "www.example.com"]);
    context.insert("app_dir", &app_dir);
    context.insert("web_root", &app_dir.join("public"));
    context.insert("log_dir", &root.join("var/log/berth/derek/gallery"));
    context.insert("tmp_dir", &root.join("srv/users/derek/tmp/gallery"));
    context.insert("users_dir", &root.join("srv/users"));
    context.insert("proxy_key", "0123456789abcdef0123456789abcdef0123456789abcdef");
    let proxy_snippet = root.join("berth-apache-proxy.conf");
    std::fs::write(&proxy_snippet, templates.render("nginx-apache-proxy.conf", &context).unwrap()).unwrap();
    context.insert("apache_proxy_snippet", &proxy_snippet);
    context.insert("php_socket", &root.join("run/berth-gallery.sock"));
    context.insert("apache_port", &apache_port);
    context.insert("apache_host_pattern", r"^(example\.com|www\.example\.com)$");
    context.insert("deny_unknown_domains", &true);
    let vhost_dir = root.join("etc/nginx/berth.d");
    std::fs::create_dir_all(&vhost_dir).unwrap();
    context.insert("vhost_dir", &vhost_dir);
    let https_port = support::servers::free_port();
    context.insert("https_listen", &format!("127.0.0.1:{https_port}"));
    context.insert("https_listen_v6", &format!("[::1]:{https_port}"));
    context.insert("challenge_dir", &root.join("run/berth/acme-challenge"));
    let tls_snippet = root.join("berth-tls.conf");
    std::fs::write(&tls_snippet, templates.render("nginx-tls.conf", &context).unwrap()).unwrap();
    context.insert("tls_snippet", &tls_snippet);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (root.join("fullchain.pem"), root.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    // Each stack, plain, with HTTPS, and with ForceSSL.
    for stack in ["nginx", "nginx-apache"] {
        for (ssl, force) in [(false, false), (true, false), (true, true)] {
            context.insert("stack", stack);
            let path = |p: &Path| if ssl { p.display().to_string() } else { String::new() };
            context.insert("ssl_certificate", &path(&cert_path));
            context.insert("ssl_certificate_key", &path(&key_path));
            context.insert("force_ssl", &force);
            let vhost = templates.render("nginx-vhost.conf", &context).unwrap();
            let catchall = templates.render("nginx-catchall.conf", &context).unwrap();
            let changes = [
                FileChange::write(nginx.path("gallery.conf"), vhost, 0o644, Service::Nginx),
                FileChange::write(nginx.path("catchall.conf"), catchall, 0o644, Service::Nginx),
            ];
            apply(&nginx.host(), &nginx.services(), &changes)
                .unwrap_or_else(|e| panic!("stack {stack}, ssl {ssl}, force {force}: {e}"));
        }
    }

    let pool = root.join("pool.conf");
    std::fs::write(&pool, templates.render("php-fpm-pool.conf", &context).unwrap()).unwrap();
    let fpm = root.join("php-fpm.conf");
    std::fs::write(
        &fpm,
        format!(
            "[global]\npid = {0}/fpm.pid\nerror_log = {0}/fpm.log\ninclude = {1}\n",
            root.display(),
            pool.display()
        ),
    )
    .unwrap();
    let runtime =
        berth::host::probe::runtimes(Path::new("/")).pop().expect("a PHP-FPM is installed (tests/run.sh installs one)");
    let php_fpm = format!("/usr/sbin/php-fpm{}", runtime.trim_start_matches("php"));
    let checked = std::process::Command::new(php_fpm).arg("-t").arg("--fpm-config").arg(&fpm).output().unwrap();
    assert!(checked.status.success(), "php-fpm -t: {}", String::from_utf8_lossy(&checked.stderr));

    let vhost = root.join("apache-vhost.conf");
    std::fs::write(&vhost, templates.render("apache-vhost.conf", &context).unwrap()).unwrap();
    let base = root.join("apache-base.conf");
    std::fs::write(&base, templates.render("apache-base.conf", &context).unwrap()).unwrap();
    let modules = "/usr/lib/apache2/modules";
    let httpd = root.join("httpd.conf");
    std::fs::write(
        &httpd,
        format!(
            "ServerRoot {r}\nServerName localhost\nPidFile {r}/apache.pid\nErrorLog {r}/apache-error.log\n\
             LoadModule mpm_event_module {modules}/mod_mpm_event.so\nLoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LogFormat \"%h %l %u %t \\\"%r\\\" %>s %O\" combined\nListen 127.0.0.1:{apache_port}\nInclude {base}\nInclude {vhost}\n",
            r = root.display(),
            base = base.display(),
            vhost = vhost.display()
        ),
    )
    .unwrap();
    let checked = std::process::Command::new("/usr/sbin/apache2").arg("-t").arg("-f").arg(&httpd).output().unwrap();
    assert!(checked.status.success(), "apache2 -t: {}", String::from_utf8_lossy(&checked.stderr));
}
