//! "success" means live (issue 14): when a job that reloads nginx, Apache or
//! PHP-FPM reports success, the very next connection gets the new configuration.
//! Every check here runs once, at once after the job: no retry, no sleep. Before
//! the fix, `nginx -s reload`, `apache2ctl graceful` and PHP-FPM's USR2 returned
//! while the old workers still accepted, and these checks failed now and then.

mod support;

use serde_json::{json, Value};
use support::machine::Machine;
use support::pki::{der_b64, TestCa, Validity};

/// Rounds of the whole cycle: a race that loses one time in a few shows up.
const ROUNDS: usize = 4;

fn ok(machine: &Machine, kind: &str, params: Value) -> Value {
    let done = machine.job(kind, params);
    assert_eq!(done["status"], "success", "{kind}: {done}");
    done
}

#[test]
fn every_reloading_job_is_live_when_it_reports_success() {
    let machine = Machine::start();
    ok(&machine, "sysuser.create", json!({"name": "derek"}));
    let ca = TestCa::new("berth live test CA");
    for round in 0..ROUNDS {
        for stack in ["nginx", "nginx-apache"] {
            let app = format!("live{round}{}", stack.len());
            let (domain, moved) = (format!("{app}.test"), format!("{app}.moved.test"));

            // app.create: a new nginx server, Apache vhost (nginx-apache) and PHP-FPM pool.
            ok(
                &machine,
                "app.create",
                json!({"name": app, "sysuser": "derek", "runtime": "php8.2", "domains": [domain], "stack": stack}),
            );
            let index = machine.path(&format!("/srv/users/derek/apps/{app}/public/index.php"));
            std::fs::write(&index, format!("<?php echo '{app} as ', posix_getpwuid(posix_geteuid())['name'];"))
                .unwrap();
            assert_eq!(machine.at_once_get(&domain, "/", 200), format!("{app} as derek"), "{stack}: app.create");

            // app.update: the domains move.
            ok(&machine, "app.update", json!({"name": app, "domains": [moved]}));
            assert_eq!(machine.at_once_get(&moved, "/", 200), format!("{app} as derek"), "{stack}: the new domain");
            assert_eq!(machine.get(&domain, "/").0, 0, "{stack}: the old domain is refused at once");

            // ssl.install, ssl.force, ssl.delete: the handshake and the redirect.
            let (cert, key) = ca.leaf(&[&moved], Validity::normal());
            ok(&machine, "ssl.install", json!({"app": app, "key": key, "cert": cert}));
            let served = machine.served_cert(&moved).unwrap_or_else(|| panic!("{stack}: no certificate at once"));
            assert_eq!(der_b64(&served), der_b64(&cert), "{stack}: ssl.install");
            ok(&machine, "ssl.force", json!({"app": app, "force": true}));
            assert_eq!(machine.get(&moved, "/").0, 301, "{stack}: ssl.force");
            ok(&machine, "ssl.force", json!({"app": app, "force": false}));
            assert_eq!(machine.get(&moved, "/").0, 200, "{stack}: ssl.force off");
            ok(&machine, "ssl.delete", json!({"app": app}));
            assert_eq!(machine.served_cert(&moved), None, "{stack}: ssl.delete");

            // app.delete: gone at once, its pool too.
            ok(&machine, "app.delete", json!({"name": app}));
            assert_eq!(machine.get(&moved, "/").0, 0, "{stack}: app.delete");
        }
    }
}
