//! `[metering]`: the usage API's keys and delivery of usage to the marketplaces.

use std::time::Duration;

use marketlink_core::Secret;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// Keys the vendor's product presents to `POST /api/v1/usage` (`Authorization: Bearer`).
    /// Only their SHA-256 digests are kept in memory. Empty: the usage API refuses everything.
    pub api_keys: Vec<Secret>,
    /// How often closed hours are sent to the marketplaces.
    pub flush_interval_secs: u64,
    /// Records per marketplace call (1 to 25).
    pub batch_size: usize,
    /// Provider calls in flight at once.
    pub concurrency: usize,
    /// How long after an hour ends its total is sent (late events still count).
    pub settle_secs: u64,
    /// How long a flusher holds claimed hours before another replica may take them over.
    pub lease_secs: u64,
    /// Events accepted per request.
    pub max_batch_events: usize,
    /// Longest wait between two attempts of an hour the marketplace turned away (throttling,
    /// 5xx, timeout): after an outage the backlog goes out within this much (a longer
    /// `Retry-After` still wins).
    pub retry_max_secs: u64,
    /// Attempts of an hour before it is dead-lettered (the marketplace's deadline may come
    /// first).
    pub retry_max_attempts: u32,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            flush_interval_secs: 60,
            batch_size: 25,
            concurrency: 4,
            settle_secs: 300,
            lease_secs: 300,
            max_batch_events: 10_000,
            retry_max_secs: 300,
            retry_max_attempts: 30,
        }
    }
}

impl MeteringConfig {
    /// The engine's settings; API keys become SHA-256 digests here.
    pub fn settings(&self) -> marketlink_engine::metering::MeteringSettings {
        use sha2::Digest;
        let defaults = marketlink_engine::metering::MeteringSettings::default();
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        marketlink_engine::metering::MeteringSettings {
            api_key_hashes: self
                .api_keys
                .iter()
                .map(|k| sha2::Sha256::digest(k.expose().as_bytes()).into())
                .collect(),
            flush_interval: Duration::from_secs(self.flush_interval_secs),
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            settle: secs(self.settle_secs),
            lease: secs(self.lease_secs),
            max_batch_events: self.max_batch_events,
            backoff: marketlink_engine::backoff::Backoff {
                max: secs(self.retry_max_secs),
                max_attempts: i64::from(self.retry_max_attempts),
                ..defaults.backoff
            },
            ..defaults
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // The largest batch any marketplace takes; each provider's own limit still applies.
        if !(1..=25).contains(&self.batch_size) {
            return Err(ConfigError::BadValue {
                key: "metering.batch_size",
                message: "must be 1 to 25 (the marketplaces' limit per call)".into(),
            });
        }
        if self.lease_secs < 30 || self.flush_interval_secs == 0 {
            return Err(ConfigError::BadValue {
                key: "metering.lease_secs",
                message: "lease_secs must be at least 30 and flush_interval_secs at least 1".into(),
            });
        }
        // Under the 5 s first delay the cap would make every retry immediate; over an hour,
        // a backlog could wait past the marketplaces' 24-hour window in a few attempts.
        if !(5..=3600).contains(&self.retry_max_secs) {
            return Err(ConfigError::BadValue {
                key: "metering.retry_max_secs",
                message: "must be 5 to 3600 seconds".into(),
            });
        }
        if self.retry_max_attempts == 0 {
            return Err(ConfigError::BadValue {
                key: "metering.retry_max_attempts",
                message: "must be at least 1".into(),
            });
        }
        if self.api_keys.iter().any(|k| k.expose().len() < 16) {
            return Err(ConfigError::BadValue {
                key: "metering.api_keys",
                message: "every key must be at least 16 characters".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_cap_reaches_the_engine_and_is_bounded() {
        let config = MeteringConfig {
            retry_max_secs: 15,
            retry_max_attempts: 40,
            ..MeteringConfig::default()
        };
        let backoff = config.settings().backoff;
        assert_eq!(backoff.max, time::Duration::seconds(15));
        assert_eq!(backoff.max_attempts, 40);
        assert_eq!(backoff.base, time::Duration::seconds(5));
        for bad in [4, 3601] {
            let config = MeteringConfig {
                retry_max_secs: bad,
                ..MeteringConfig::default()
            };
            assert!(
                matches!(
                    config.validate(),
                    Err(ConfigError::BadValue {
                        key: "metering.retry_max_secs",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
