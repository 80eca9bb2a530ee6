//! `monitor.policy`: replaces the whole monitoring policy (thresholds, port checks,
//! process checks; the IONOS seed's shape, [`crate::model::monitor`]).
//!
//! The policy lives in the inventory, so it survives restarts and `hello` shows it;
//! the monitor loop ([`crate::agent::monitor`]) reads it at its next reading, so the
//! job's success means the checks are in force from the next reading on. Nothing
//! on the host changes. The same policy again is `changed: false`.

use serde_json::{json, Value};

use crate::job::{BlockingJob, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::monitor::Policy;
use crate::model::resource::Resource;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("monitor.policy", SetPolicy::parse);
}

/// `monitor.policy {thresholds, ports?, processes?}`.
#[derive(Debug)]
struct SetPolicy {
    policy: Policy,
}

impl SetPolicy {
    fn parse(params: &Value) -> Result<Box<dyn crate::job::Job>, JobError> {
        Ok(Box::new(SetPolicy { policy: Policy::from_value(params)? }))
    }
}

impl BlockingJob for SetPolicy {
    fn resources(&self) -> Resources {
        Resources::of([Resource::Monitor])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let changed = ctx.inventory.read(|inv| inv.monitor.as_ref() != Some(&self.policy));
        if changed {
            let policy = self.policy.clone();
            ctx.record(|inv| inv.monitor = Some(policy))?;
        }
        let mut outcome = Outcome::default();
        outcome.step("monitoring policy", changed);
        outcome.result = Some(json!({"policy": self.policy}));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::refused;
    use crate::model::monitor::tests::seed;

    fn with(edit: impl FnOnce(&mut Value)) -> Value {
        let mut params = seed();
        edit(&mut params);
        params
    }

    /// Hostile and broken policies are refused at parse time, naming the field.
    #[test]
    fn hostile_params_are_refused_naming_the_field() {
        let port = |n: u64| json!({"protocol": "TCP", "port": n, "alert_if": "NOT_RESPONDING"});
        let cases = [
            (json!("policy"), "params"),
            (json!({}), "thresholds"),
            (with(|p| p["thresholds"] = json!([])), "thresholds"),
            (with(|p| p["thresholds"].as_object_mut().unwrap().remove("ram").map(drop).unwrap()), "thresholds.ram"),
            (
                with(|p| p["thresholds"]["disk"].as_object_mut().unwrap().remove("critical").map(drop).unwrap()),
                "thresholds.disk.critical",
            ),
            (with(|p| p["thresholds"]["cpu"]["warning"] = json!({"alert": true})), "thresholds.cpu.warning.value"),
            (with(|p| p["thresholds"]["cpu"]["warning"]["value"] = json!(0)), "thresholds.cpu.warning.value"),
            (with(|p| p["thresholds"]["cpu"]["warning"]["value"] = json!(96)), "thresholds.cpu.warning.value"),
            (with(|p| p["thresholds"]["ram"]["critical"]["value"] = json!(101)), "thresholds.ram.critical.value"),
            (with(|p| p["thresholds"]["disk"]["critical"]["value"] = json!(-1)), "thresholds.disk.critical.value"),
            (with(|p| p["thresholds"]["disk"]["warning"]["value"] = json!(80.5)), "thresholds.disk.warning.value"),
            (with(|p| p["thresholds"]["disk"]["warning"]["value"] = json!("80")), "thresholds.disk.warning.value"),
            (
                with(|p| p["thresholds"]["transfer"]["critical"]["value"] = json!(2001)),
                "thresholds.transfer.critical.value",
            ),
            (
                with(|p| p["thresholds"]["internal_ping"]["critical"]["value"] = json!(101)),
                "thresholds.internal_ping.critical.value",
            ),
            (
                with(|p| p["thresholds"]["internal_ping"]["critical"]["value"] = json!(u64::MAX)),
                "thresholds.internal_ping.critical.value",
            ),
            // warning ≥ critical
            (with(|p| p["thresholds"]["cpu"]["warning"]["value"] = json!(95)), "thresholds.cpu.warning.value"),
            (with(|p| p["thresholds"]["disk"]["warning"]["value"] = json!(91)), "thresholds.disk.warning.value"),
            (with(|p| p["thresholds"]["cpu"]["critical"]["alert"] = json!("yes")), "thresholds.cpu.critical.alert"),
            (with(|p| p["thresholds"]["cpu"]["critical"]["alert"] = json!(1)), "thresholds.cpu.critical.alert"),
            (with(|p| p["ports"] = json!({"protocol": "TCP"})), "ports"),
            (with(|p| p["ports"] = json!(["TCP:80"])), "ports[0]"),
            (with(|p| p["ports"][0]["protocol"] = json!("SCTP")), "ports[0].protocol"),
            (with(|p| p["ports"][0]["protocol"] = json!("tcp")), "ports[0].protocol"),
            (with(|p| p["ports"][0]["port"] = json!(0)), "ports[0].port"),
            (with(|p| p["ports"][0]["port"] = json!(65536)), "ports[0].port"),
            (with(|p| p["ports"][0]["port"] = json!(80.0)), "ports[0].port"),
            (with(|p| p["ports"][0]["port"] = json!("80")), "ports[0].port"),
            (with(|p| p["ports"][0]["alert_if"] = json!("DOWN")), "ports[0].alert_if"),
            (with(|p| p["ports"] = json!([port(80), port(81), port(82), port(80)])), "ports"),
            (with(|p| p["ports"] = Value::Array((1..=101).map(port).collect())), "ports"),
            (with(|p| p["processes"][0]["process"] = json!("/usr/sbin/nginx")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("../nginx")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("x".repeat(4096))), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("..")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("ngi nx")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("nginx\n")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!("nġinx")), "processes[0].process"),
            (with(|p| p["processes"][0]["process"] = json!(7)), "processes[0].process"),
            (with(|p| p["processes"][0]["alert_if"] = json!("running")), "processes[0].alert_if"),
            (
                with(|p| {
                    p["processes"] =
                        json!([{"process": "a", "alert_if": "RUNNING"}, {"process": "a", "alert_if": "NOT_RUNNING"}])
                }),
                "processes",
            ),
            (
                with(|p| {
                    p["processes"] = Value::Array(
                        (0..101).map(|i| json!({"process": format!("p{i}"), "alert_if": "RUNNING"})).collect(),
                    )
                }),
                "processes",
            ),
        ];
        for (params, field) in cases {
            assert_eq!(refused("monitor.policy", params.clone()), field, "{params}");
        }
    }

    #[test]
    fn the_seed_and_the_limits_are_taken() {
        let catalogue = Catalogue::new(false);
        assert!(catalogue.parse("monitor.policy", &seed()).is_ok());
        let full = with(|p| {
            p["ports"] = Value::Array(
                (1..=100).map(|n| json!({"protocol": if n % 2 == 0 { "TCP" } else { "UDP" }, "port": n * 655, "alert_if": "RESPONDING"})).collect(),
            );
            p["processes"] =
                Value::Array((0..100).map(|i| json!({"process": format!("p{i}"), "alert_if": "RUNNING"})).collect());
        });
        assert!(catalogue.parse("monitor.policy", &full).is_ok());
        let bare = with(|p| {
            p.as_object_mut().unwrap().remove("ports");
            p.as_object_mut().unwrap().remove("processes");
        });
        assert!(catalogue.parse("monitor.policy", &bare).is_ok());
    }
}
