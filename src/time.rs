//! Timestamps on the wire: RFC 3339 UTC strings with milliseconds (`2026-11-22T12:00:00.084Z`).
//!
//! Formatting, and parsing for the one job that takes times (`metrics.history`), is
//! the civil-from-days algorithm and its inverse rather than a date-time crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as an RFC 3339 UTC string.
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Milliseconds since the Unix epoch (for records on disk).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}

/// `t` as an RFC 3339 UTC string; times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 time (`2026-12-02T13:00:00Z`, `2026-12-02T14:00:00.5+01:00`) as
/// milliseconds since the Unix epoch; `None` for anything else, for a time before
/// the epoch and for a year past 9999. A leap second (`:60`) reads as `:59.999`.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] || hour > 23 || minute > 59 {
        return None;
    }
    let (second, mut millis) = match second {
        60 => (59, 999),
        0..=59 => (second, 0),
        _ => return None,
    };
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        if millis == 0 {
            millis = rest[1..1 + len.min(3)].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
                * 10u32.pow(3 - len.min(3) as u32);
        }
        rest = &rest[1 + len..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = ([*h1, *h2], [*m1, *m2]);
            if !h.iter().chain(m.iter()).all(u8::is_ascii_digit) {
                return None;
            }
            let (h, m) = (i64::from((h[0] - b'0') * 10 + h[1] - b'0'), i64::from((m[0] - b'0') * 10 + m[1] - b'0'));
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' {
                h * 3600 + m * 60
            } else {
                -(h * 3600 + m * 60)
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    u64::try_from(secs).ok().map(|secs| secs * 1000 + u64::from(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_795_348_800, 84), "2026-11-22T12:00:00.084Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, 84, 1_795_348_800_084, 951_782_400_000, 4_107_542_399_999, 1_798_462_800_000] {
            let text = rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
            assert_eq!(parse_rfc3339(&text), Some(ms), "{text}");
        }
        assert_eq!(parse_rfc3339("2026-12-02T14:00:00+01:00"), parse_rfc3339("2026-12-02T13:00:00Z"));
        assert_eq!(parse_rfc3339("2026-12-02t13:00:00.5z"), Some(parse_rfc3339("2026-12-02T13:00:00Z").unwrap() + 500));
        assert_eq!(parse_rfc3339("2026-12-02T13:00:00.123456789Z"), parse_rfc3339("2026-12-02T13:00:00.123Z"));
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), parse_rfc3339("2016-12-31T23:59:59.999Z"));
    }

    #[test]
    fn refuses_what_is_no_rfc3339_time() {
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02 13:00:00Z",
            "2026-12-02T13:00:00",
            "2026-13-02T13:00:00Z",
            "2026-02-29T13:00:00Z",
            "2026-12-32T13:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T13:60:00Z",
            "2026-12-02T13:00:61Z",
            "2026-12-02T13:00:00.Z",
            "2026-12-02T13:00:00.1234567890Z",
            "2026-12-02T13:00:00+1:00",
            "2026-12-02T13:00:00+24:00",
            "2026-12-02T13:00:00ZZ",
            "+026-12-02T13:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "2026-12-02T13:00:00\u{0}",
            "١٩٧٠-01-01T00:00:00Z",
            "2026-12-02T13:00:00Z\n",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400_000));
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }
}
