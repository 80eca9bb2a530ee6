//! `metrics.history {from, to, step?}`: the agent's own history of the host's
//! resources ([`crate::state::history`]), one average per step per series, `null`
//! where nothing was recorded, so a control plane draws its usage graphs (the last
//! hour ... the last year) and fills a gap of its own from the agent.
//!
//! It changes nothing and holds no resource: it never waits for a web job, nor
//! holds one up. Every field is checked at parse time against the clock then: the
//! range (at most 366 days, ending at most a minute from now), and the step (a
//! multiple of the resolution the history holds for `from`, at most 1,440 points).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::validate::{shown, FieldError, Params};
use crate::state::history::{resolution_for, resolutions, Series};
use crate::time::{parse_rfc3339, rfc3339, unix_millis};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("metrics.history", Query::parse);
}

/// The longest range: 366 days.
const MAX_RANGE_MS: u64 = 366 * 86_400_000;
/// How far past now `to` may be.
const AHEAD_MS: u64 = 60_000;
/// The most points a series has.
const MAX_POINTS: u64 = 1440;
/// Default steps past the stored resolutions, for ranges they give too many points.
const COARSER_STEPS: [u64; 5] = [7200, 10_800, 21_600, 43_200, 86_400];
/// Longest time string taken, in bytes (RFC 3339 with nanoseconds and an offset is 35).
const MAX_TIME_LEN: usize = 40;

/// `metrics.history`, checked.
#[derive(Debug, PartialEq)]
struct Query {
    from_ms: u64,
    to_ms: u64,
    step_secs: u64,
}

impl Query {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        Ok(Box::new(Query::parse_at(params, unix_millis(SystemTime::now()))?))
    }

    fn parse_at(params: &Value, now_ms: u64) -> Result<Query, FieldError> {
        let params = Params::new(params)?;
        let from_ms = time(&params, "from")?;
        let to_ms = time(&params, "to")?;
        if to_ms <= from_ms {
            return Err(FieldError::new("to", "must be after from"));
        }
        if to_ms > now_ms.saturating_add(AHEAD_MS) {
            return Err(FieldError::new("to", format!("must be at most a minute from now ({})", stamp(now_ms))));
        }
        if to_ms - from_ms > MAX_RANGE_MS {
            return Err(FieldError::new("from", "must be at most 366 days before to"));
        }
        let res = resolution_for(from_ms, now_ms);
        let step_secs = match params.opt_u64("step")? {
            Some(step) => {
                if !(60..=MAX_RANGE_MS / 1000).contains(&step) {
                    return Err(FieldError::new("step", "must be 60 to 31622400 seconds (366 days)"));
                }
                if step % res != 0 {
                    return Err(FieldError::new(
                        "step",
                        format!(
                            "must be a multiple of {res}: the history holds {res}-second averages from {}",
                            stamp(from_ms)
                        ),
                    ));
                }
                let n = points(from_ms, to_ms, step);
                if n > MAX_POINTS {
                    return Err(FieldError::new(
                        "step",
                        format!("gives {n} points; at most {MAX_POINTS}: take a larger step"),
                    ));
                }
                step
            }
            None => resolutions()
                .into_iter()
                .chain(COARSER_STEPS)
                .find(|&step| step % res == 0 && points(from_ms, to_ms, step) <= MAX_POINTS)
                .expect("a day's step gives at most 367 points"),
        };
        Ok(Query { from_ms, to_ms, step_secs })
    }
}

/// A required RFC 3339 time param, in milliseconds since the epoch.
fn time(params: &Params, key: &str) -> Result<u64, FieldError> {
    let text = params.str(key)?;
    (text.len() <= MAX_TIME_LEN).then(|| parse_rfc3339(text)).flatten().ok_or_else(|| {
        FieldError::new(
            params.field(key),
            format!("must be an RFC 3339 time after 1970 like 2026-12-02T13:00:00Z, not {}", shown(text)),
        )
    })
}

/// The points of a series: steps aligned to multiples of `step` since the epoch,
/// from the one that holds `from` to the one that holds the last moment before `to`.
fn points(from_ms: u64, to_ms: u64, step_secs: u64) -> u64 {
    let step_ms = step_secs * 1000;
    (to_ms - (from_ms - from_ms % step_ms)).div_ceil(step_ms)
}

/// A time as the result shows it: RFC 3339 UTC, milliseconds only when there are some.
fn stamp(ms: u64) -> String {
    let text = rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
    match text.strip_suffix(".000Z") {
        Some(secs) => format!("{secs}Z"),
        None => text,
    }
}

/// The result's `series`: per name, `[time, average]` pairs (`null`: a gap).
fn series_json(answer: &Series) -> Value {
    let step_ms = answer.step_secs * 1000;
    let times: Vec<String> = (0..answer.points as u64).map(|i| stamp(answer.start_ms + i * step_ms)).collect();
    let mut out = Map::new();
    for (name, values) in &answer.series {
        let pairs = times
            .iter()
            .zip(values)
            .map(|(at, value)| json!([at, value.map(|v| (v * 1000.0).round() / 1000.0)]))
            .collect();
        out.insert(name.clone(), Value::Array(pairs));
    }
    Value::Object(out)
}

impl BlockingJob for Query {
    /// None: it only reads the history's files.
    fn resources(&self) -> Resources {
        Resources::default()
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let answer = ctx.history.query(self.from_ms, self.to_ms, self.step_secs);
        let mut outcome = Outcome::default();
        outcome.step("history", false);
        outcome.result = Some(json!({
            "from": stamp(self.from_ms),
            "to": stamp(self.to_ms),
            "step": self.step_secs,
            "series": series_json(&answer),
        }));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::refused;

    const NOW: u64 = 1_796_216_400_000; // 2026-12-02T13:00:00Z

    fn at(params: Value) -> Result<Query, String> {
        Query::parse_at(&params, NOW).map_err(|e| e.field)
    }

    #[test]
    fn the_seeds_periods_get_a_step_of_at_most_1440_points() {
        let period = |hours: u64, step: Option<u64>| {
            let mut params = json!({"from": stamp(NOW - hours * 3_600_000 + 17_000), "to": stamp(NOW + 17_000)});
            if let Some(step) = step {
                params["step"] = json!(step);
            }
            at(params).unwrap().step_secs
        };
        assert_eq!(period(1, None), 60, "LAST_HOUR");
        assert_eq!(period(24, None), 600, "LAST_24H: 1,441 minutes is one too many");
        assert_eq!(period(24, Some(120)), 120);
        assert_eq!(period(7 * 24, None), 600, "LAST_7D");
        assert_eq!(period(30 * 24, None), 3600, "LAST_30D");
        assert_eq!(period(365 * 24, None), 43_200, "LAST_365D");
        assert_eq!(period(365 * 24, Some(86_400)), 86_400);
        let exact = at(json!({"from": "2026-12-02T12:00:00Z", "to": "2026-12-02T13:00:00+00:00"})).unwrap();
        assert_eq!(exact, Query { from_ms: NOW - 3_600_000, to_ms: NOW, step_secs: 60 });
        assert_eq!(points(exact.from_ms, exact.to_ms, 60), 60);
        assert_eq!(stamp(NOW), "2026-12-02T13:00:00Z");
        assert_eq!(stamp(NOW + 5), "2026-12-02T13:00:00.005Z");
    }

    /// Hostile and broken values are refused at parse time, naming the field.
    #[test]
    fn hostile_params_are_refused_naming_the_field() {
        let hour_ago = "2026-12-02T12:00:00Z";
        let now = "2026-12-02T13:00:00Z";
        let cases = [
            (json!([]), "params"),
            (json!({"to": now}), "from"),
            (json!({"from": hour_ago}), "to"),
            (json!({"from": 1_796_212_800, "to": now}), "from"),
            (json!({"from": hour_ago, "to": ["now"]}), "to"),
            (json!({"from": "yesterday", "to": now}), "from"),
            (json!({"from": "2026-12-02", "to": now}), "from"),
            (json!({"from": "2026-12-02T12:00:00", "to": now}), "from"),
            (json!({"from": "2026-02-30T12:00:00Z", "to": now}), "from"),
            (json!({"from": "1969-12-31T23:00:00Z", "to": now}), "from"),
            (json!({"from": format!("{hour_ago}{}", " ".repeat(4096)), "to": now}), "from"),
            (json!({"from": "2026-12-02T12:00:00Z\n", "to": now}), "from"),
            (json!({"from": hour_ago, "to": "2026-12-02T13:00:00.000000000001Z"}), "to"),
            (json!({"from": hour_ago, "to": "99999-12-02T13:00:00Z"}), "to"),
            (json!({"from": now, "to": now}), "to"),
            (json!({"from": now, "to": hour_ago}), "to"),
            (json!({"from": hour_ago, "to": "2026-12-02T13:01:01Z"}), "to"),
            (json!({"from": hour_ago, "to": "9999-12-31T23:59:59Z"}), "to"),
            (json!({"from": "2025-12-01T12:59:59Z", "to": now}), "from"),
            (json!({"from": "1970-01-01T00:00:00Z", "to": now}), "from"),
            (json!({"from": hour_ago, "to": now, "step": 0}), "step"),
            (json!({"from": hour_ago, "to": now, "step": -60}), "step"),
            (json!({"from": hour_ago, "to": now, "step": 60.5}), "step"),
            (json!({"from": hour_ago, "to": now, "step": "60"}), "step"),
            (json!({"from": hour_ago, "to": now, "step": 1e30}), "step"),
            (json!({"from": hour_ago, "to": now, "step": u64::MAX}), "step"),
            (json!({"from": hour_ago, "to": now, "step": 31_622_460}), "step"),
            (json!({"from": hour_ago, "to": now, "step": 90}), "step"),
            (json!({"from": hour_ago, "to": now, "step": 1}), "step"),
            (json!({"from": "2026-11-25T13:00:00Z", "to": now, "step": 60}), "step"),
            (json!({"from": "2026-12-01T00:00:00Z", "to": now, "step": 60}), "step"),
            (json!({"from": "2025-12-03T13:00:00Z", "to": now, "step": 3600}), "step"),
        ];
        for (params, field) in cases {
            assert_eq!(at(params.clone()), Err(field.to_owned()), "{params}");
        }
        // Through the catalogue, with the real clock: the same checks.
        assert_eq!(
            refused("metrics.history", json!({"from": "2026-12-02T12:00:00Z", "to": "3000-01-01T00:00:00Z"})),
            "to"
        );
        assert_eq!(refused("metrics.history", json!({"from": "x", "to": "y"})), "from");
    }

    #[test]
    fn it_holds_no_resource() {
        let query = Query { from_ms: 0, to_ms: 60_000, step_secs: 60 };
        assert!(!BlockingJob::resources(&query)
            .conflicts_with(&Resources::of([crate::model::resource::Resource::WebStack])));
    }
}
