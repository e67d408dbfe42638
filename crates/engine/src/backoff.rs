//! Retry schedules: exponential backoff with full jitter, capped, honouring Retry-After.

use std::time::Duration as StdDuration;

use time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Attempts (claims) after which an item is given up and buried.
    pub max_attempts: i64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::seconds(2),
            max: Duration::minutes(30),
            max_attempts: 12,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempts + 1`: a random value in `[ceiling/2, ceiling]` where
    /// `ceiling = min(max, base * 2^(attempts-1))`, never shorter than what the marketplace asked.
    pub fn delay(&self, attempts: i64, retry_after: Option<StdDuration>) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let ceiling = self
            .base
            .checked_mul(1_i32 << exponent.min(30))
            .unwrap_or(self.max)
            .min(self.max);
        let half: Duration = ceiling / 2_i32;
        let jitter_ms = fastrand::i64(0..=half.whole_milliseconds().max(0) as i64);
        let delay = half + Duration::milliseconds(jitter_ms);
        match retry_after.and_then(|d| Duration::try_from(d).ok()) {
            Some(asked) if asked > delay => asked,
            _ => delay,
        }
    }

    pub fn exhausted(&self, attempts: i64) -> bool {
        attempts >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds() {
        let backoff = Backoff::default();
        for attempts in 1..40 {
            let d = backoff.delay(attempts, None);
            let exponent = (attempts - 1).min(30) as u32;
            let ceiling = (Duration::seconds(2) * 2_f64.powi(exponent as i32)).min(backoff.max);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempts}: {d}");
        }
    }

    #[test]
    fn honours_retry_after() {
        let backoff = Backoff::default();
        let d = backoff.delay(1, Some(StdDuration::from_secs(90)));
        assert_eq!(d, Duration::seconds(90));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let backoff = Backoff::default();
        assert!(!backoff.exhausted(11));
        assert!(backoff.exhausted(12));
    }
}
