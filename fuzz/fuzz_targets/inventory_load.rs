//! `inventory.json` as the daemon and `berth apply` load it
//! (`state::inventory::InventoryStore`, which is `serde_json::from_slice` into
//! `model::inventory::Inventory`). Proves, for any file:
//! - loading never panics;
//! - a loaded inventory holds only values its rules accept: every name passes its
//!   field rule again, each firewall rule renders a one-line nft match with no
//!   statement separator or comment in it;
//! - what berth saves back (`to_vec_pretty`, as `InventoryStore::update` writes it)
//!   loads to the same inventory, and saving that is byte-identical.
#![no_main]

use berth::model::validate;
use berth::model::{Inventory, SslSource};
use libfuzzer_sys::fuzz_target;

fn rule_ok(rule: fn(&str, &str) -> Result<(), validate::FieldError>, v: &str) {
    rule("f", v).unwrap_or_else(|e| panic!("a loaded value breaks its rule: {e}"));
}

fuzz_target!(|data: &[u8]| {
    let Ok(inventory) = serde_json::from_slice::<Inventory>(data) else { return };
    for name in inventory.users.keys() {
        rule_ok(validate::sysuser_name, name);
    }
    for (name, app) in &inventory.apps {
        rule_ok(validate::app_name, name);
        rule_ok(validate::sysuser_name, &app.sysuser);
        rule_ok(validate::runtime, &app.runtime);
        app.domains.iter().for_each(|d| rule_ok(validate::domain, d));
        if let Some(ssl) = &app.ssl {
            ssl.ordered_for.iter().for_each(|n| rule_ok(validate::server_name, n));
            assert!(ssl.source == SslSource::Auto || ssl.source == SslSource::Custom);
        }
    }
    for (name, db) in &inventory.databases {
        rule_ok(validate::db_name, name);
        rule_ok(validate::app_name, &db.app);
        rule_ok(validate::db_user_name, &db.user);
    }
    if let Some(app) = &inventory.settings.default_app {
        rule_ok(validate::app_name, app);
    }
    for rule in &inventory.settings.firewall_rules {
        let nft = rule.nft_match();
        assert!(!nft.contains(['\n', '\r', ';', '#', '"']), "nft match {nft:?}");
        if let Some(d) = &rule.description {
            assert!(!d.chars().any(char::is_control), "description with a control character: {d:?}");
        }
    }

    let saved = serde_json::to_vec_pretty(&inventory).expect("an inventory serializes");
    let loaded: Inventory = serde_json::from_slice(&saved)
        .unwrap_or_else(|e| panic!("berth cannot load what it saved: {e}\n{}", String::from_utf8_lossy(&saved)));
    assert_eq!(loaded, inventory, "save then load changed the inventory");
    assert_eq!(serde_json::to_vec_pretty(&loaded).unwrap(), saved, "saving again is not byte-identical");
});
