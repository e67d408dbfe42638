//! The metering engine against a counting provider: validation, hourly totals, zero records,
//! batching, retries, dead letters, final usage, and two flushers on one PostgreSQL database.

mod fake;
mod flush;
mod harness;
mod ingest;
mod lifecycle;
mod postgres;
mod retries;
