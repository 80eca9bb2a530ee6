//! The firewall against the real nftables, in a test machine with two peers in
//! network namespaces of their own: real TCP connections and UDP datagrams from
//! outside the machine, before and after each change, and a foreign table that
//! berth must never touch.

mod support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use support::machine::Machine;
use support::netns::{Listeners, Peer};

const MACHINE_A: &str = "192.0.2.1";
const MACHINE_B: &str = "198.51.100.1";
const MACHINE_V6: &str = "2001:db8::1";
/// Never opened by any rule: it must stay closed while the firewall is on.
const OTHER: u16 = 9000;
const UDP: u16 = 5353;

struct Net {
    machine: Machine,
    /// 192.0.2.2 and 2001:db8::2.
    a: Peer,
    /// 198.51.100.2, the second source.
    b: Peer,
    listeners: Listeners,
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

impl Net {
    fn start() -> Net {
        let machine = Machine::start();
        // sshd's real config decides the SSH ports: 22, and 2222 from an included file.
        std::fs::create_dir_all(machine.path("/etc/ssh/sshd_config.d")).unwrap();
        std::fs::write(machine.path("/etc/ssh/sshd_config"), "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n")
            .unwrap();
        std::fs::write(machine.path("/etc/ssh/sshd_config.d/ops.conf"), "Port 2222\n").unwrap();
        let a = Peer::join(&machine, &["192.0.2.1/24", "2001:db8::1/64"], &["192.0.2.2/24", "2001:db8::2/64"]);
        let b = Peer::join(&machine, &["198.51.100.1/24"], &["198.51.100.2/24"]);
        let listeners = Listeners::start(&machine, &[22, 2222, 80, 443, 8080, OTHER], UDP);
        Net { machine, a, b, listeners }
    }

    /// Which of `ports` accept a connection from peer A (IPv4), peer A (IPv6), peer B.
    fn open(&self, ports: &[u16]) -> (Vec<u16>, Vec<u16>, Vec<u16>) {
        let pick = |peer: &Peer, ip: &str| {
            let addrs: Vec<SocketAddr> = ports.iter().map(|p| addr(ip, *p)).collect();
            let open = peer.connects_all(&addrs);
            ports.iter().zip(open).filter(|(_, open)| *open).map(|(p, _)| *p).collect::<Vec<u16>>()
        };
        (pick(&self.a, MACHINE_A), pick(&self.a, MACHINE_V6), pick(&self.b, MACHINE_B))
    }

    /// Which peers' UDP datagrams arrive ("a", "b").
    fn udp_from(&self) -> Vec<String> {
        self.listeners.received(); // nothing stale
        self.a.send_udp(addr(MACHINE_A, UDP), b"a");
        self.b.send_udp(addr(MACHINE_B, UDP), b"b");
        let mut got = self.listeners.received();
        got.sort();
        got
    }

    fn nft(&self, args: &[&str]) -> (bool, String) {
        let out = self.machine.run("/usr/sbin/nft", args);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn berth_table(&self) -> Option<String> {
        let (ok, listed) = self.nft(&["list", "table", "inet", "berth"]);
        ok.then_some(listed)
    }

    fn job(&self, kind: &str, params: Value) -> Value {
        let done = self.machine.job(kind, params);
        assert_eq!(done["status"], "success", "{kind}: {done}");
        done
    }
}

const PORTS: [u16; 6] = [22, 2222, 80, 443, 8080, OTHER];

#[test]
fn the_firewall_opens_only_ssh_http_https_and_the_rules_and_leaves_other_tables_alone() {
    let net = Net::start();
    let foreign = "table inet foreign {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 7 accept\n\t}\n}\n";
    std::fs::write(net.machine.dir.path().join("foreign.nft"), foreign).unwrap();
    let (ok, _) = net.nft(&["-f", net.machine.dir.path().join("foreign.nft").to_str().unwrap()]);
    assert!(ok, "the foreign table loads");
    let foreign_before = net.nft(&["list", "table", "inet", "foreign"]).1;
    let foreign_untouched =
        |when: &str| assert_eq!(net.nft(&["list", "table", "inet", "foreign"]).1, foreign_before, "{when}");

    // Off (the start): everything with a listener answers.
    let all = PORTS.to_vec();
    assert_eq!(net.open(&PORTS), (all.clone(), all.clone(), all.clone()));
    assert_eq!(net.udp_from(), ["a", "b"]);
    assert_eq!(net.berth_table(), None);

    // On: SSH (22 and sshd's included 2222), HTTP and HTTPS; nothing else, IPv6 alike.
    let on = net.job("server.update", json!({"firewall": true}));
    assert_eq!(on["changed"], true, "{on}");
    assert_eq!(on["result"]["firewall"], true);
    let base = vec![22, 2222, 80, 443];
    assert_eq!(net.open(&PORTS), (base.clone(), base.clone(), base.clone()));
    assert!(net.udp_from().is_empty(), "UDP is dropped");
    foreign_untouched("after firewall: true");
    let machine_log = net.machine.path("/etc/berth/firewall.nft");
    assert!(std::fs::read_to_string(&machine_log).unwrap().contains("table inet berth {"), "the ruleset is recorded");

    // Rules: 8080 for peer A's network only, UDP for peer A's address only.
    let rules = json!({"rules": [
        {"protocol": "TCP", "port": "8080", "source": "192.0.2.0/24", "description": "admin panel"},
        {"protocol": "UDP", "port": "5000-5400", "source": "192.0.2.2"},
    ]});
    let opened = net.job("firewall.rules", rules.clone());
    assert_eq!(opened["changed"], true, "{opened}");
    let with_8080 = vec![22, 2222, 80, 443, 8080];
    assert_eq!(net.open(&PORTS), (with_8080, base.clone(), base.clone()), "8080 for 192.0.2.0/24 only");
    assert_eq!(net.udp_from(), ["a"], "UDP for 192.0.2.2 only");
    foreign_untouched("after firewall.rules");

    // The same rules again: the same table, nothing doubled, changed: false.
    let table = net.berth_table().unwrap();
    let again = net.job("firewall.rules", rules);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(net.berth_table().unwrap(), table);
    assert_eq!(table.matches("tcp dport 8080").count(), 1, "{table}");
    let on_again = net.job("server.update", json!({"firewall": true}));
    assert_eq!(on_again["changed"], false, "{on_again}");
    assert_eq!(net.berth_table().unwrap(), table);

    // New rules replace the old ones: 8080 and UDP close, 9000 opens for peer B's network.
    net.job("firewall.rules", json!({"rules": [{"protocol": "TCP/UDP", "port": "9000", "source": "198.51.100.0/24"}]}));
    assert_eq!(net.open(&PORTS), (base.clone(), base.clone(), vec![22, 2222, 80, 443, OTHER]));
    assert!(net.udp_from().is_empty());
    let table = net.berth_table().unwrap();
    assert!(!table.contains("8080") && !table.contains("5000-5400"), "old rules are gone: {table}");

    // A reboot loses the kernel's ruleset; the agent loads the recorded one at start.
    let (ok, _) = net.nft(&["delete", "table", "inet", "berth"]);
    assert!(ok);
    assert_eq!(net.open(&[OTHER]).0, [OTHER], "no firewall after the 'reboot'");
    let config = net.machine.config();
    let run = net.machine.run(
        "/usr/bin/timeout",
        &["-s", "TERM", "3", env!("CARGO_BIN_EXE_berth"), "run", "--config", config.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("firewall ruleset applied at start"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(net.berth_table().unwrap(), table, "the agent's start restored the table");
    assert_eq!(net.open(&PORTS).0, base);

    // Off: the table is gone and everything answers again; other tables never moved.
    let off = net.job("server.update", json!({"firewall": false}));
    assert_eq!(off["changed"], true, "{off}");
    assert_eq!(net.berth_table(), None);
    assert_eq!(net.open(&PORTS), (all.clone(), all.clone(), all));
    assert_eq!(net.udp_from(), ["a", "b"]);
    let off_again = net.job("server.update", json!({"firewall": false}));
    assert_eq!(off_again["changed"], false, "an absent table is not an error: {off_again}");
    foreign_untouched("after firewall: false");
}

#[test]
fn hostile_firewall_rules_change_nothing_and_ufw_is_not_fought() {
    let net = Net::start();
    net.job("server.update", json!({"firewall": true}));
    let table = net.berth_table().unwrap();
    let inventory = std::fs::read_to_string(net.machine.dir.path().join("state/inventory.json")).unwrap();
    let many: Vec<Value> = (0..501).map(|_| json!({"protocol": "TCP", "port": "80"})).collect();
    for (rule, field) in [
        (json!([{"protocol": "SCTP", "port": "80"}]), "rules[0].protocol"),
        (json!([{"protocol": "TCP", "port": "0"}]), "rules[0].port"),
        (json!([{"protocol": "TCP", "port": "70000"}]), "rules[0].port"),
        (json!([{"protocol": "UDP", "port": "9000-8000"}]), "rules[0].port"),
        (json!([{"protocol": "TCP", "port": "80", "source": "192.0.2.0/33"}]), "rules[0].source"),
        (json!([{"protocol": "TCP", "port": "80", "source": "not-an-ip"}]), "rules[0].source"),
        (json!([{"protocol": "ICMP", "port": "8"}]), "rules[0].port"),
        (json!([{"protocol": "TCP", "port": "22"}, {"protocol": "TCP", "port": "80\n} accept"}]), "rules[1].port"),
        (json!(many), "rules"),
        (json!("all"), "rules"),
    ] {
        let done = net.machine.job("firewall.rules", json!({"rules": rule}));
        assert_eq!(done["error"]["code"], "invalid_params", "{done}");
        assert_eq!(done["error"]["field"], field, "{done}");
    }
    for params in [
        json!({"firewall": "yes"}),
        json!({"firewall": 1}),
        json!({"autoupdates": "true"}),
        json!({"deny_unknown_domains": null, "firewall": []}),
    ] {
        let done = net.machine.job("server.update", params.clone());
        assert_eq!(done["error"]["code"], "invalid_params", "{params}: {done}");
    }
    assert_eq!(net.berth_table().unwrap(), table, "nothing changed in the kernel");
    let now = std::fs::read_to_string(net.machine.dir.path().join("state/inventory.json")).unwrap();
    assert_eq!(now, inventory, "nothing changed in the inventory");

    // A ruleset nft refuses (a broken template override) is config_invalid in nft's
    // words, and the running table stays.
    std::fs::create_dir_all(net.machine.path("/etc/berth/templates")).unwrap();
    let broken = "table inet berth\ndelete table inet berth\ntable inet berth {\n chain input {\n  type filter hook input priority filter; policy drop;\n  tcp dport { {{ ssh_ports | join(sep=\", \") }} } acceptt\n }\n}\n";
    std::fs::write(net.machine.path("/etc/berth/templates/nftables.conf"), broken).unwrap();
    let refused = net.machine.job("firewall.rules", json!({"rules": [{"protocol": "TCP", "port": "8080"}]}));
    assert_eq!(refused["error"]["code"], "config_invalid", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("acceptt"), "nft's words: {refused}");
    assert_eq!(net.berth_table().unwrap(), table, "the running table stays");
    assert!(
        !std::fs::read_to_string(net.machine.path("/etc/berth/firewall.nft")).unwrap().contains("acceptt"),
        "not recorded"
    );
    std::fs::remove_file(net.machine.path("/etc/berth/templates/nftables.conf")).unwrap();
    assert_eq!(std::fs::read_to_string(net.machine.dir.path().join("state/inventory.json")).unwrap(), inventory);

    // ufw active: berth says so instead of fighting it.
    net.job("server.update", json!({"firewall": false}));
    std::fs::create_dir_all(net.machine.path("/etc/ufw")).unwrap();
    std::fs::write(net.machine.path("/etc/ufw/ufw.conf"), "ENABLED=yes\n").unwrap();
    net.machine.program("/usr/sbin", "ufw", Some("#!/bin/sh\nexit 0\n"));
    let refused = net.machine.job("server.update", json!({"firewall": true}));
    assert_eq!(refused["error"]["code"], "precondition_failed", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("ufw is active"), "{refused}");
    assert_eq!(net.berth_table(), None);
}
