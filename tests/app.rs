//! Apps against the real nginx, Apache and PHP-FPM, in a test machine (namespaces
//! standing in for a fresh Debian server, with berth's production paths).

mod support;

use serde_json::json;
use support::machine::Machine;

#[test]
fn the_test_machine_keeps_berth_off_the_host() {
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let machine = Machine::start();
    let done = machine.job("sysuser.create", json!({"name": "derek"}));
    assert_eq!(done["status"], "success", "{done}");
    assert!(std::fs::read_to_string(machine.path("/etc/passwd")).unwrap().contains("derek:"));
    assert!(machine.path("/srv/users/derek/apps").is_dir());
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
    assert!(!std::path::Path::new("/srv/users/derek").exists());
}
