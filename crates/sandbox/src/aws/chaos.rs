//! Delivery "chaos": the at-least-once, best-effort-order delivery AWS documents, made frequent
//! and repeatable so tests meet it on every run.
//!
//! "Standard queues support at-least-once message delivery. However, occasionally […] more
//! than one copy of a message might be delivered out of order. Standard queues provide
//! best-effort ordering" (Amazon SQS Developer Guide, "Amazon SQS standard queues"); a copy
//! left on a server that was unavailable at DeleteMessage "might be returned to you during a
//! subsequent receive request" ("Amazon SQS at-least-once delivery"). SNS HTTP(S) deliveries
//! are retried and may repeat (an endpoint "should have code that can handle retried
//! messages", SNS Developer Guide, "Set the delivery policy"). What AWS does rarely, chaos does
//! at the rates configured here; every decision comes from one seeded generator, so a seed
//! replays the same decisions for the same sequence of sandbox operations.

use serde::{Deserialize, Serialize};

/// The chaos switch (`[delivery_chaos]` in the scenario TOML, or
/// [`AwsSandbox::set_delivery_chaos`](super::AwsSandbox::set_delivery_chaos)). Off unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryChaos {
    /// Seed of the generator behind every decision.
    pub seed: u64,
    /// Chance (0 to 100) that a message gets a second copy: a second SQS copy with the same
    /// MessageId and its own receipt handle, or a second HTTP POST of the same SNS envelope.
    pub duplicate_percent: u8,
    /// SQS: ReceiveMessage picks among the visible messages in random order. SNS over HTTP:
    /// deliveries leave in the background after random delays, so later ones can overtake.
    pub reorder: bool,
    /// Each delivery (SQS visibility or HTTP POST) waits a random 0..=max_delay_ms first. SQS
    /// delays run on the sandbox's clock (advance a manual clock to see them); HTTP delays are
    /// real time.
    pub max_delay_ms: u64,
}

impl Default for DeliveryChaos {
    fn default() -> Self {
        Self {
            seed: 0,
            duplicate_percent: 20,
            reorder: true,
            max_delay_ms: 1000,
        }
    }
}

impl DeliveryChaos {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.duplicate_percent > 100 {
            anyhow::bail!("delivery_chaos.duplicate_percent must be 0 to 100");
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast and stable across crate versions, which keeps a seed's decisions the
/// same from one build to the next (a general-purpose RNG crate may change its stream).
#[derive(Debug, Clone, Default)]
pub struct ChaosRng(u64);

impl ChaosRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }

    /// True with `percent` chance.
    pub fn chance(&mut self, percent: u8) -> bool {
        self.up_to(99) < u64::from(percent)
    }
}

/// The live switch and its generator, kept in the sandbox state (not persisted).
#[derive(Debug, Clone, Default)]
pub struct ChaosState {
    pub config: Option<DeliveryChaos>,
    pub rng: ChaosRng,
}

impl ChaosState {
    pub fn set(&mut self, chaos: Option<DeliveryChaos>) {
        self.rng = ChaosRng::new(chaos.map(|c| c.seed).unwrap_or_default());
        self.config = chaos;
    }

    /// How a newly queued message is delivered: its delay and, when duplicated, the delay of
    /// its second copy. `None` when chaos is off.
    pub fn plan_delivery(&mut self) -> Option<(u64, Option<u64>)> {
        let c = self.config?;
        let delay = self.rng.up_to(c.max_delay_ms);
        let copy = self
            .rng
            .chance(c.duplicate_percent)
            .then(|| self.rng.up_to(c.max_delay_ms));
        Some((delay, copy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_decisions() {
        let chaos = DeliveryChaos {
            seed: 42,
            duplicate_percent: 50,
            reorder: true,
            max_delay_ms: 100,
        };
        let run = || {
            let mut s = ChaosState::default();
            s.set(Some(chaos));
            (0..50).map(|_| s.plan_delivery()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let copies = a
            .iter()
            .filter(|p| p.is_some_and(|(_, c)| c.is_some()))
            .count();
        assert!((10..=40).contains(&copies), "{copies} copies of 50 at 50%");
        assert!(a.iter().flatten().all(|(d, _)| *d <= 100));
        let mut off = ChaosState::default();
        assert_eq!(off.plan_delivery(), None);
    }

    #[test]
    fn bounds_hold() {
        let mut r = ChaosRng::new(7);
        assert!((0..1000).all(|_| r.up_to(3) <= 3));
        assert_eq!(r.up_to(0), 0);
        assert!(!(0..100).any(|_| r.chance(0)));
        assert!((0..100).all(|_| r.chance(100)));
    }
}
