//! The monitoring center of `berth dev`, in the IONOS Cloud Panel seed's shape:
//! `GET /monitoring_center/:server_id?period=LAST_HOUR|LAST_24H|LAST_7D|LAST_30D|LAST_365D|CUSTOM`
//! (`CUSTOM` with `start_date` and `end_date`, RFC 3339 or `YYYY-MM-DD`).
//!
//! The usage series are the agent's own history: the route sends `metrics.history
//! {from, to}` to the server's agent and waits for its answer (at most
//! [`PATIENCE`]), so this is the one route that waits on the agent; while the agent
//! is not connected the series are empty and `history` says why. The alert counts
//! are the `monitor.alert` events the control plane received from that server in the
//! period (by `at`), by kind and level. `agent` says whether the agent ever said
//! hello, whether the server's policy needs it (ports or processes) and whether it
//! is missing now.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::resources::{action, found};
use super::Shared;

/// How long the route waits for the agent's `metrics.history`.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// The longest CUSTOM period (the agent's own bound).
const MAX_RANGE_SECS: u64 = 366 * 86_400;

/// The server id of `GET /v1/monitoring_center/:id`, if that is the request.
pub fn wanted<'a>(method: &hyper::Method, path: &'a str) -> Option<&'a str> {
    let id = path.trim_end_matches('/').strip_prefix("/v1/monitoring_center/")?;
    (method == hyper::Method::GET && !id.is_empty() && !id.contains('/')).then_some(id)
}

/// The monitoring center's answer for `server` and the request's `query`.
pub async fn get(shared: &Shared, server: &str, query: &str) -> Result<Value, ApiError> {
    let record = shared.store.read(|w| found(w, "server", server))??;
    let (period, from, to) = period(query, now_secs())?;
    let (sessions, hello) = {
        let live = shared.live.lock().expect("live state");
        live.get(server).map(|l| (l.sessions, l.hello.is_some())).unwrap_or((0, false))
    };
    let history = match sessions {
        0 => Err("the agent is not connected: no history to show".to_owned()),
        _ => history(shared, server, from, to).await?,
    };
    let (policy, alerts) =
        shared.store.read(|w| (super::monitoring::of_server(w, server), super::monitoring::alerts_of(w, server)))?;
    let needs = policy.is_some_and(|p| {
        p["ports"].as_array().is_some_and(|a| !a.is_empty()) || p["processes"].as_array().is_some_and(|a| !a.is_empty())
    });
    let series = history.as_ref().map(|h| h["series"].clone()).unwrap_or(Value::Null);
    let mut answer = usage(&series);
    answer["id"] = json!(server);
    answer["name"] = record["name"].clone();
    answer["period"] = json!({"period": period, "start_date": rfc3339(from), "end_date": rfc3339(to),
        "step": history.as_ref().map(|h| h["step"].clone()).unwrap_or(Value::Null)});
    answer["history"] = match &history {
        Ok(_) => json!({"available": true}),
        Err(why) => json!({"available": false, "reason": why}),
    };
    answer["alerts"] = counts(&alerts, from, to);
    answer["agent"] = json!({
        "agent_installed": hello || !record["lastconn"].is_null(),
        "monitoring_needs_agent": needs,
        "missing_agent_alert": needs && sessions == 0,
    });
    Ok(json!({"data": answer}))
}

/// Sends `metrics.history` and waits for its result (`Err` with the agent's message
/// when it refused; an API error when it did not answer in time).
async fn history(shared: &Shared, server: &str, from: u64, to: u64) -> Result<Result<Value, String>, ApiError> {
    let params = json!({"from": rfc3339(from), "to": rfc3339(to)});
    let id = shared.store.write(|w| action(w, server, "metrics.history", params, None))?;
    shared.wake();
    let started = Instant::now();
    loop {
        let done = shared.store.read(|w| w.get("action", &id))?.filter(|a| a["status"] != "open");
        if let Some(done) = done {
            // The series were for this answer only: the action is not kept.
            shared.store.write(|w| w.delete("action", &id))?;
            return Ok(match done["status"].as_str() {
                Some("success") => Ok(done["result"].clone()),
                _ => Err(format!("metrics.history failed: {}", done["error"]["message"].as_str().unwrap_or("?"))),
            });
        }
        if started.elapsed() >= PATIENCE {
            // Not sent, or sent and late: its answer would only be kept for nothing.
            shared.store.write(|w| w.delete("action", &id))?;
            return Err(ApiError::new(
                hyper::StatusCode::GATEWAY_TIMEOUT,
                format!("the agent did not answer metrics.history within {} s", PATIENCE.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent's `series` as IONOS's usage: `cpu`, `ram`, `disk` (the root disk's) in
/// `used_percent`, each disk under `disks`, `transfer` as `received`/`sent` kbps,
/// `internal_ping` as `response_time` ms; `null` where the agent recorded nothing.
fn usage(series: &Value) -> Value {
    let points = |key: &str| series[key].as_array().cloned().unwrap_or_default();
    let shaped = |key: &str, name: &str| -> Vec<Value> {
        points(key).iter().map(|p| json!({"date": p[0], name: p[1]})).collect()
    };
    let mut disks = Map::new();
    if let Some(all) = series.as_object() {
        for (key, _) in all.iter().filter(|(k, _)| k.starts_with("disk:")) {
            disks.insert(key["disk:".len()..].to_owned(), json!({"unit": "%", "data": shaped(key, "used_percent")}));
        }
    }
    let root = disks.get("/").or_else(|| disks.values().next()).cloned().unwrap_or(json!({"unit": "%", "data": []}));
    let (received, sent) = (points("transfer_in"), points("transfer_out"));
    let transfer: Vec<Value> = received
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"date": p[0], "received": p[1], "sent": sent.get(i).map(|s| s[1].clone())}))
        .collect();
    json!({
        "cpu": {"unit": "%", "data": shaped("cpu", "used_percent")},
        "ram": {"unit": "%", "data": shaped("ram", "used_percent")},
        "disk": root,
        "disks": disks,
        "transfer": {"unit": "kbps", "data": transfer},
        "internal_ping": {"unit": "ms", "data": shaped("internal_ping", "response_time")},
    })
}

/// The alerts sent in `[from, to]`, counted by kind and level.
fn counts(alerts: &[Value], from: u64, to: u64) -> Value {
    let mut counts = json!({});
    for kind in ["resources", "ports", "process"] {
        counts[kind] = json!({"critical": 0, "warning": 0, "ok": 0});
    }
    for alert in alerts {
        let at = alert["at"].as_str().and_then(parse_time);
        let (Some(kind), Some(level)) = (alert["kind"].as_str(), alert["level"].as_str()) else { continue };
        if at.is_some_and(|at| (from..=to).contains(&at)) && counts[kind][level].is_u64() {
            counts[kind][level] = json!(counts[kind][level].as_u64().unwrap_or(0) + 1);
        }
    }
    counts
}

/// `(period, from, to)` of the query, in seconds since the epoch; 400 naming the field.
fn period(query: &str, now: u64) -> Result<(String, u64, u64), ApiError> {
    let param = |key: &str| {
        query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| decode(v))
    };
    let bad = |field: &str, message: &str| ApiError::bad_request(format!("{field}: {message}"));
    let period = param("period").unwrap_or_else(|| "LAST_24H".to_owned());
    let back = match period.as_str() {
        "LAST_HOUR" => 3600,
        "LAST_24H" => 86_400,
        "LAST_7D" => 7 * 86_400,
        "LAST_30D" => 30 * 86_400,
        "LAST_365D" => 365 * 86_400,
        "CUSTOM" => {
            let date = |field: &str| -> Result<u64, ApiError> {
                let value = param(field).ok_or_else(|| bad(field, "is required with period CUSTOM"))?;
                parse_time(&value).ok_or_else(|| bad(field, "must be an RFC 3339 UTC time or YYYY-MM-DD"))
            };
            let (from, to) = (date("start_date")?, date("end_date")?);
            if from >= to {
                return Err(bad("end_date", "must be after start_date"));
            }
            if to > now + 60 {
                return Err(bad("end_date", "must not be in the future"));
            }
            if to - from > MAX_RANGE_SECS {
                return Err(bad("start_date", "the period may be at most 366 days"));
            }
            return Ok((period, from, to));
        }
        _ => return Err(bad("period", "must be LAST_HOUR, LAST_24H, LAST_7D, LAST_30D, LAST_365D or CUSTOM")),
    };
    Ok((period, now.saturating_sub(back), now))
}

/// A query value's `%XX` escapes and `+` decoded (an invalid escape stays as it is).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn rfc3339(secs: u64) -> String {
    crate::time::rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or `+00:00`), or of
/// midnight UTC of `YYYY-MM-DD`.
pub fn parse_time(text: &str) -> Option<u64> {
    let num = |s: &str| -> Option<u64> { s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten() };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day) = (num(year)?, num(month)?, num(day)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = days_from_civil(year as i64, month as u32, day as u32) as u64 * 86_400;
    if let Some(time) = time {
        let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?;
        let time = time.split_once('.').map_or(Some(time), |(t, frac)| num(frac).map(|_| t))?;
        let mut hms = time.split(':');
        let (h, m, s) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
        if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + m * 60 + s;
    }
    Some(secs)
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_the_agent_writes_them() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-22T12:00:00.084Z"), Some(1_795_348_800));
        assert_eq!(parse_time("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_time("2000-02-29T00:00:00+00:00"), Some(951_782_400));
        for secs in [0, 951_782_400, 1_795_348_800, 4_107_542_399] {
            assert_eq!(parse_time(&rfc3339(secs)), Some(secs));
        }
        for bad in [
            "",
            "2026-13-01",
            "2026-1-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
            "x-y-z",
            "2026-01-01T00:00:00.x1Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn periods_name_the_field_they_refuse() {
        let now = 1_795_348_800;
        assert_eq!(period("period=LAST_HOUR", now).unwrap(), ("LAST_HOUR".into(), now - 3600, now));
        assert_eq!(period("", now).unwrap().1, now - 86_400, "LAST_24H by default");
        assert_eq!(period("period=LAST_365D", now).unwrap().1, now - 365 * 86_400);
        let custom = "period=CUSTOM&start_date=2026-11-20T00%3A00%3A00Z&end_date=2026-11-21";
        assert_eq!(
            period(custom, now).unwrap(),
            ("CUSTOM".into(), now - 2 * 86_400 - 12 * 3600, now - 86_400 - 12 * 3600)
        );
        for (query, field) in [
            ("period=LAST_YEAR", "period:"),
            ("period=CUSTOM&end_date=2026-11-21", "start_date:"),
            ("period=CUSTOM&start_date=2026-11-21&end_date=2026-11-20", "end_date:"),
            ("period=CUSTOM&start_date=2026-11-21&end_date=2027-11-20", "end_date:"),
            ("period=CUSTOM&start_date=2024-11-21&end_date=2026-11-20", "start_date:"),
            ("period=CUSTOM&start_date=yesterday&end_date=2026-11-20", "start_date:"),
        ] {
            let message = period(query, now).unwrap_err().message;
            assert!(message.starts_with(field), "{query}: {message}");
        }
    }

    #[test]
    fn series_become_ionos_usage_and_alerts_are_counted() {
        let series = json!({"cpu": [["2026-12-02T13:00:00Z", 3.5], ["2026-12-02T13:01:00Z", null]],
            "ram": [["2026-12-02T13:00:00Z", 40.0]], "transfer_in": [["2026-12-02T13:00:00Z", 12.0]],
            "transfer_out": [["2026-12-02T13:00:00Z", 30.0]], "internal_ping": [["2026-12-02T13:00:00Z", 4.2]],
            "disk:/": [["2026-12-02T13:00:00Z", 55.0]], "disk:/var/lib/mysql": [["2026-12-02T13:00:00Z", 10.0]]});
        let shown = usage(&series);
        assert_eq!(
            shown["cpu"]["data"],
            json!([{"date": "2026-12-02T13:00:00Z", "used_percent": 3.5},
            {"date": "2026-12-02T13:01:00Z", "used_percent": null}])
        );
        assert_eq!(shown["disk"]["data"][0]["used_percent"], 55.0);
        assert_eq!(shown["disks"]["/var/lib/mysql"]["data"][0]["used_percent"], 10.0);
        assert_eq!(
            shown["transfer"]["data"],
            json!([{"date": "2026-12-02T13:00:00Z", "received": 12.0, "sent": 30.0}])
        );
        assert_eq!(shown["internal_ping"]["data"][0]["response_time"], 4.2);
        assert_eq!(usage(&Value::Null)["cpu"]["data"], json!([]));

        let alert = |kind: &str, level: &str, at: &str| json!({"kind": kind, "level": level, "at": at});
        let alerts = [
            alert("process", "critical", "2026-12-02T13:00:30Z"),
            alert("process", "ok", "2026-12-02T13:05:00.120Z"),
            alert("resources", "warning", "2026-12-02T13:00:00Z"),
            alert("ports", "critical", "2026-12-01T00:00:00Z"), // before the period
            alert("bogus", "critical", "2026-12-02T13:00:00Z"),
        ];
        let from = parse_time("2026-12-02T12:00:00Z").unwrap();
        let counts = counts(&alerts, from, from + 3600 * 2);
        assert_eq!(
            counts,
            json!({"process": {"critical": 1, "warning": 0, "ok": 1},
            "resources": {"critical": 0, "warning": 1, "ok": 0}, "ports": {"critical": 0, "warning": 0, "ok": 0}})
        );
    }
}
