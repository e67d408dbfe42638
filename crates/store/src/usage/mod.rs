//! Metering: the raw usage ledger (`usage_events`), the hourly totals sent to marketplaces
//! (`usage_hours`) and their delivery bookkeeping. See ADR 0005.
//!
//! Ingest appends a batch of events to the ledger in one transaction, so an event is either
//! stored or not at all; each claim first folds the events stored since the last one into
//! their hourly totals (ADR 0010; on PostgreSQL beside ingest, ADR 0026). A flusher claims due
//! hours with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), which also marks them
//! `sending` — in flight, quantity frozen — before any marketplace call; it then settles each one with its outcome, presenting the
//! lease. An hour whose flusher died stays `sending` until the lease expires and is then
//! claimed again and resent identically: the marketplaces de-duplicate identical records, so
//! a resend is never billed twice.
//!
//! One module per step, each depending only on those listed before it:
//! - [`types`]: what callers see (events, hours, claims, settlements, the backlog);
//! - [`hour_row`]: an hour's row as read back;
//! - [`fold`]: adding stored events to their hourly totals;
//! - [`cap`]: the accepted total of hours whose marketplace caps them, checked at ingest;
//! - [`ingest`]: appending events to the ledger;
//! - [`claim`]: folding, then freezing due hours under a lease (on PostgreSQL after a barrier);
//! - [`settle`]: recording what came of sending them;
//! - [`zero_fill`]: zero totals for hours without usage;
//! - [`reads`]: totals, backlog and subscriptions for readers.

mod cap;
mod claim;
mod fold;
mod hour_row;
mod ingest;
mod reads;
mod settle;
mod types;
mod zero_fill;

pub use fold::MAX_HOUR_MICROS;
pub use types::{
    IngestOutcome, NewUsageEvent, UsageBacklog, UsageClaim, UsageHour, UsageHourState,
    UsageSettlement, UsageTarget,
};
