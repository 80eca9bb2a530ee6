//! Reconnect delays (PROTOCOL 1): exponential backoff with full jitter,
//! `random(0, min(cap, 1 s × 2^n))`, `n` reset once a connection stayed up 60 s.
//!
//! Pure arithmetic over a random source, so tests pin the bounds.

use std::time::Duration;

/// The cap of ordinary reconnects.
pub const CAP: Duration = Duration::from_secs(60);
/// The cap after the control plane rejected the credentials (401/403).
pub const AUTH_CAP: Duration = Duration::from_secs(300);
/// After a clean close by the control plane (1001, 1012) the first retry waits up to this.
pub const CLEAN_CLOSE_MAX: Duration = Duration::from_secs(5);
/// A connection up this long resets the attempt counter.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Rejected credentials never retry sooner than this: no hot loop against a 401.
pub const AUTH_FLOOR: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// The delay before the next attempt after a failure; `unit` is a random draw in [0, 1).
    pub fn next(&mut self, cap: Duration, unit: f64) -> Duration {
        let ceiling = Duration::from_secs(1u64 << self.attempts.min(20)).min(cap);
        self.attempts = self.attempts.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The first delay after a clean close by the control plane.
    pub fn clean_close_delay(unit: f64) -> Duration {
        CLEAN_CLOSE_MAX.mul_f64(unit.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_cap() {
        let mut backoff = Backoff::default();
        let ceilings: Vec<u64> = (0..9).map(|_| backoff.next(CAP, 0.999_999).as_secs()).collect();
        assert_eq!(ceilings, [0, 1, 3, 7, 15, 31, 59, 59, 59]);
        assert_eq!(backoff.next(CAP, 0.0), Duration::ZERO, "full jitter reaches zero");
    }

    #[test]
    fn auth_cap_is_five_minutes_and_reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..30 {
            assert!(backoff.next(AUTH_CAP, 1.0) <= AUTH_CAP);
        }
        assert_eq!(backoff.next(AUTH_CAP, 1.0), AUTH_CAP);
        backoff.reset();
        assert_eq!(backoff.next(CAP, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn clean_close_waits_at_most_five_seconds() {
        assert!(Backoff::clean_close_delay(1.0) <= CLEAN_CLOSE_MAX);
    }
}
