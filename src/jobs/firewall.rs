//! The firewall: `firewall.rules`, and the ruleset model that `server.update
//! {firewall}` and the agent's start apply.
//!
//! On, berth's table lets in established traffic, loopback, the ICMP networks need,
//! SSH on sshd's own ports, HTTP, HTTPS and the custom allow rules, and drops every
//! other inbound packet. Off, the table is gone. The ruleset is rendered whole from
//! the inventory's settings (`templates/nftables.conf`) and loaded in one nft
//! transaction by `host::nft`, so applying the same settings twice yields the same
//! table. Custom rules are validated into typed values here; only those values
//! reach the template.

use serde_json::{json, Value};
use tera::Context;

use crate::host::nft;
use crate::host::Host;
use crate::job::{BlockingJob, Job, JobContext, JobError, Machine, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{FieldError, Params};
use crate::state::inventory::Settings;
use crate::web::stack;
use crate::web::templates::Templates;

pub use crate::model::firewall::{parse_rule, Protocol, Rule};

/// At most this many custom rules.
pub const MAX_RULES: usize = 500;
const WEB_PORTS: [u16; 2] = [80, 443];

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("firewall.rules", FirewallRules::parse);
}

/// `firewall.rules {rules}`: these allow rules, and only these, beside the base ones.
#[derive(Debug)]
struct FirewallRules {
    rules: Vec<Rule>,
}

impl FirewallRules {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let items = params.object_array("rules")?.ok_or_else(|| FieldError::new("rules", "is required"))?;
        if items.len() > MAX_RULES {
            return Err(FieldError::new(
                "rules",
                format!("at most {MAX_RULES} rules are allowed, not {}", items.len()),
            )
            .into());
        }
        let rules = items.iter().map(parse_rule).collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(FirewallRules { rules }))
    }
}

impl BlockingJob for FirewallRules {
    fn resources(&self) -> Resources {
        Resources::of([Resource::Firewall])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let mut settings = ctx.inventory.read(|inv| inv.settings.clone());
        let rules_changed = settings.firewall_rules != self.rules;
        settings.firewall_rules = self.rules;
        let mut outcome = Outcome::default();
        if settings.firewall {
            outcome.step("firewall", converge(ctx.host.as_ref(), &settings)?);
        }
        outcome.step("rules recorded", rules_changed);
        let count = settings.firewall_rules.len();
        let enabled = settings.firewall;
        ctx.record(|inv| inv.settings.firewall_rules = settings.firewall_rules)?;
        outcome.result = Some(json!({"rules": count, "firewall": enabled}));
        Ok(outcome)
    }
}

/// The whole ruleset `settings` mean: berth's table, or its removal when the firewall is off.
pub fn render(templates: &Templates, root: &std::path::Path, settings: &Settings) -> Result<String, JobError> {
    if !settings.firewall {
        return Ok(nft::REMOVAL.to_owned());
    }
    let mut context = Context::new();
    context.insert("ssh_ports", &nft::ssh_ports(root));
    context.insert("web_ports", &WEB_PORTS);
    context.insert("rules", &settings.firewall_rules.iter().map(Rule::nft_match).collect::<Vec<_>>());
    templates.render("nftables.conf", &context).map_err(stack::template_error)
}

/// What must hold before berth touches the firewall: the real root (the kernel's
/// ruleset is not under a sandbox), and, to turn it on, no other firewall manager.
pub fn precondition(root: &std::path::Path, settings: &Settings) -> Result<(), JobError> {
    if root != std::path::Path::new("/") {
        return Err(JobError::PreconditionFailed(format!(
            "the firewall is the kernel's, not under root {}: it needs root = \"/\"",
            root.display()
        )));
    }
    if settings.firewall {
        if let Some(other) = nft::other_firewall(root) {
            return Err(JobError::PreconditionFailed(format!(
                "{other} is active on this host; berth does not fight another firewall manager. \
                 Disable {other}, or leave berth's firewall off"
            )));
        }
    }
    Ok(())
}

/// Makes the kernel hold what `settings` mean; true when berth's table changed.
pub fn converge(host: &dyn Host, settings: &Settings) -> Result<bool, JobError> {
    let root = host.root();
    precondition(root, settings)?;
    let templates = Templates::shared(root).map_err(stack::template_error)?;
    let ruleset = render(&templates, root, settings)?;
    let before = nft::list(host)?;
    nft::load(host, &ruleset)?;
    Ok(nft::list(host)? != before)
}

/// At the agent's start: loads the ruleset the inventory records, so the firewall
/// survives a reboot. Only when it is on and the root is the real one; a failure is
/// logged for the operator (the agent still starts, to take the fixing job).
pub fn reapply_at_start(machine: &Machine) {
    let settings = machine.inventory.read(|inv| inv.settings.clone());
    if !settings.firewall || machine.host.root() != std::path::Path::new("/") {
        return;
    }
    match converge(machine.host.as_ref(), &settings) {
        Ok(changed) => {
            tracing::info!(changed, rules = settings.firewall_rules.len(), "firewall ruleset applied at start")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot apply the recorded firewall ruleset at start; the host may be unprotected")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::ErrorCode;
    use std::path::Path;

    fn parse(params: Value) -> Result<Box<dyn Job>, JobError> {
        FirewallRules::parse(&params)
    }

    fn field_of(params: Value) -> String {
        let err = parse(params.clone()).err().unwrap_or_else(|| panic!("accepted: {params}"));
        assert_eq!(err.code(), ErrorCode::InvalidParams, "{err}");
        err.field().unwrap().to_owned()
    }

    #[test]
    fn hostile_rules_are_refused_naming_the_field() {
        let rule = |r: Value| json!({"rules": [{"protocol": "TCP", "port": "22"}, r]});
        assert_eq!(field_of(json!({})), "rules");
        assert_eq!(field_of(json!({"rules": "TCP 80"})), "rules");
        assert_eq!(field_of(json!({"rules": ["TCP"]})), "rules[0]");
        assert_eq!(field_of(rule(json!({"protocol": "SCTP", "port": "80"}))), "rules[1].protocol");
        assert_eq!(field_of(rule(json!({"protocol": "tcp", "port": "80"}))), "rules[1].protocol");
        assert_eq!(field_of(rule(json!({"protocol": "TCP"}))), "rules[1].port");
        for port in ["0", "70000", "65536", "100-80", "80-", "-80", "8a", " 80", "80 ", "1-2-3", "+80", "", "000080"] {
            assert_eq!(field_of(rule(json!({"protocol": "UDP", "port": port}))), "rules[1].port", "{port:?}");
        }
        assert_eq!(field_of(rule(json!({"protocol": "TCP", "port": 80}))), "rules[1].port", "a number, not a string");
        assert_eq!(field_of(rule(json!({"protocol": "ICMP", "port": "8"}))), "rules[1].port");
        for source in [
            "192.0.2.0/33",
            "192.0.2.1/24",
            "192.0.2",
            "300.1.1.1",
            "2001:db8::/129",
            "2001:db8::1/32",
            "any",
            "192.0.2.0/",
            "10.0.0.0/8; drop",
        ] {
            assert_eq!(
                field_of(rule(json!({"protocol": "TCP", "port": "80", "source": source}))),
                "rules[1].source",
                "{source:?}"
            );
        }
        let newline = rule(json!({"protocol": "TCP", "port": "80", "description": "a\n} accept"}));
        assert_eq!(field_of(newline), "rules[1].description");
        let many: Vec<Value> = (0..=MAX_RULES).map(|_| json!({"protocol": "TCP", "port": "80"})).collect();
        assert_eq!(field_of(json!({"rules": many})), "rules");
    }

    #[test]
    fn good_rules_render_to_nft_matches() {
        let params = json!({"rules": [
            {"protocol": "TCP", "port": "8080", "source": "192.0.2.0/24", "description": "admin"},
            {"protocol": "UDP", "port": "60000-61000"},
            {"protocol": "TCP/UDP", "port": "53", "source": "2001:db8::1"},
            {"protocol": "ICMP", "source": "198.51.100.7"},
            {"protocol": "ICMP"},
        ]});
        let params = Params::new(&params).unwrap();
        let rules: Vec<Rule> =
            params.object_array("rules").unwrap().unwrap().iter().map(|r| parse_rule(r).unwrap()).collect();
        let matches: Vec<String> = rules.iter().map(Rule::nft_match).collect();
        assert_eq!(
            matches,
            [
                "ip saddr 192.0.2.0/24 tcp dport 8080",
                "udp dport 60000-61000",
                "ip6 saddr 2001:db8::1/128 meta l4proto { tcp, udp } th dport 53",
                "ip saddr 198.51.100.7/32 meta l4proto icmp",
                "meta l4proto { icmp, ipv6-icmp }",
            ]
        );
    }

    #[test]
    fn the_ruleset_holds_sshds_ports_and_off_removes_the_table() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/ssh")).unwrap();
        std::fs::write(root.path().join("etc/ssh/sshd_config"), "Port 2222\n").unwrap();
        let templates = Templates::load(Path::new("/nonexistent-root")).unwrap();
        let rule = Rule { protocol: Protocol::Tcp, ports: Some((8080, 8080)), source: None, description: None };
        let on = Settings { firewall: true, firewall_rules: vec![rule], ..Settings::default() };
        let ruleset = render(&templates, root.path(), &on).unwrap();
        assert!(ruleset.contains("tcp dport { 2222 } accept"), "{ruleset}");
        assert!(ruleset.contains("tcp dport 8080 accept"), "{ruleset}");
        assert!(ruleset.contains("policy drop"), "{ruleset}");
        let off = render(&templates, root.path(), &Settings::default()).unwrap();
        assert_eq!(off, nft::REMOVAL);
    }

    #[test]
    fn a_sandboxed_root_never_touches_the_kernels_firewall() {
        let root = tempfile::tempdir().unwrap();
        let host = crate::host::fake::FakeHost::new(root.path());
        let err = converge(&host, &Settings { firewall: true, ..Settings::default() }).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PreconditionFailed);
        assert!(host.commands().is_empty());
    }
}
