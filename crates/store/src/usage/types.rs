//! The metering types the store's callers see.

use std::collections::{BTreeMap, HashMap};

use marketlink_core::{ExternalRef, PlanId, Quantity, SubscriptionId, UsageAllocation};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;

/// One usage event as the vendor reported it, validated and resolved to a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUsageEvent {
    pub id: Uuid,
    pub subscription_id: SubscriptionId,
    pub dimension: String,
    pub occurred_at: OffsetDateTime,
    /// Start of the hour `occurred_at` falls in.
    pub hour: OffsetDateTime,
    pub quantity: Quantity,
    pub idempotency_key: Option<String>,
    pub allocations: Vec<UsageAllocation>,
    /// The most the event's hour may total, this event included: the marketplace's largest
    /// hourly record (AWS). `None`: no cap, and the hour is not counted at ingest.
    pub hour_cap: Option<Quantity>,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Events stored and counted.
    pub accepted: usize,
    /// Events whose idempotency key was already stored: ignored.
    pub duplicates: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageHourState {
    /// Collecting usage; sent once the hour has closed.
    Open,
    /// Frozen and in flight or waiting for a retry; never changes quantity again.
    Sending,
    /// The marketplace holds it as billable.
    Delivered,
    /// The marketplace holds another quantity for this hour (AWS DuplicateRecord, Azure
    /// Duplicate with another quantity): a discrepancy for people.
    Mismatch,
    /// Given up (rejected, not subscribed, retries or window exhausted): the dead letter.
    Dead,
    /// Nothing to send (zero usage on a marketplace that takes no zero records).
    Skipped,
}

impl UsageHourState {
    pub const ALL: [UsageHourState; 6] = [
        Self::Open,
        Self::Sending,
        Self::Delivered,
        Self::Mismatch,
        Self::Dead,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Mismatch => "mismatch",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(value: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown usage state `{value}`")))
    }
}

/// One hourly total and its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageHour {
    /// Also the [`marketlink_core::UsageRecord`] id: stable across resends.
    pub id: Uuid,
    pub subscription_id: SubscriptionId,
    pub marketplace: String,
    pub dimension: String,
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub quantity: Quantity,
    pub state: UsageHourState,
    pub attempts: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    pub lease_id: Option<Uuid>,
    /// The quantity frozen when first claimed for sending.
    pub sent_quantity: Option<Quantity>,
    pub marketplace_record_id: Option<String>,
    /// The last outcome, in words.
    pub outcome: Option<String>,
    pub last_error: Option<String>,
    /// Cost-allocation tags (loaded when claimed).
    pub allocations: Vec<UsageAllocation>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Hours claimed by one flusher, with their subscriptions.
#[derive(Debug, Clone)]
pub struct UsageClaim {
    pub lease_id: Uuid,
    pub hours: Vec<UsageHour>,
    /// The subscriptions of its hours but those the caller said it knew.
    pub targets: HashMap<SubscriptionId, UsageTarget>,
}

/// A claimed hour's subscription as its marketplace knows it: what its record is sent with,
/// and no more (a flush keeps one per subscription between claims).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTarget {
    pub external: ExternalRef,
    pub plan_id: Option<PlanId>,
}

/// How a sent (or skipped) hour ended this time.
#[derive(Debug, Clone, PartialEq)]
pub enum UsageSettlement {
    Delivered {
        marketplace_id: Option<String>,
        outcome: String,
    },
    /// Still frozen; send the identical record again at `at`.
    Retry {
        error: String,
        at: OffsetDateTime,
    },
    Mismatch {
        detail: String,
    },
    Dead {
        reason: String,
    },
    Skipped {
        reason: String,
    },
}

/// Backlog and dead letters, for `marketlink meter status` and readiness.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageBacklog {
    /// Hourly totals per state.
    pub by_state: BTreeMap<String, i64>,
    /// Open or sending hours that have closed (waiting to be delivered).
    pub due: i64,
    /// The oldest hour not delivered yet among those.
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_due_hour: Option<OffsetDateTime>,
}
