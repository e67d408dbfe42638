//! Usage as sent to a marketplace: one aggregated record per subscription, dimension and hour.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{ExternalRef, Quantity};

/// AWS cost-allocation split of a record's quantity (`UsageAllocations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAllocation {
    pub quantity: Quantity,
    /// Tag key/value pairs.
    pub tags: Vec<(String, String)>,
}

/// An hourly usage total ready to be reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Our id for the record, stable across resends.
    pub id: Uuid,
    pub subscription: ExternalRef,
    /// Azure needs the plan on each event.
    pub plan_id: Option<String>,
    pub dimension: String,
    /// Start of the hour the usage belongs to (UTC, minutes and seconds zero).
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub quantity: Quantity,
    #[serde(default)]
    pub allocations: Vec<UsageAllocation>,
}

/// What the marketplace did with one record. Exactly one per record sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UsageOutcome {
    /// Accepted and billable (also what an identical resend returns on AWS).
    Accepted { marketplace_id: Option<String> },
    /// Already accepted earlier with the same quantity (Azure 409 / Duplicate): delivered.
    AlreadyAccepted { marketplace_id: Option<String> },
    /// An earlier record for this hour had a different quantity (AWS DuplicateRecord): not
    /// billed; a discrepancy to surface.
    QuantityMismatch { detail: String },
    /// The marketplace does not consider the buyer subscribed: not billed.
    NotSubscribed { detail: String },
    /// Refused for good (expired window, unknown dimension, ...): not billed.
    Rejected { code: String, detail: String },
    /// Not processed this time (AWS UnprocessedRecords, per-record throttling): send again.
    Retry { detail: String },
}

impl UsageOutcome {
    /// Whether the marketplace now holds this record as billable.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Accepted { .. } | Self::AlreadyAccepted { .. })
    }
}
