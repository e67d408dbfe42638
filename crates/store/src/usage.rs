//! Metering: the raw usage ledger (`usage_events`), the hourly totals sent to marketplaces
//! (`usage_hours`) and their delivery bookkeeping. See ADR 0005.
//!
//! Ingest appends a batch of events to the ledger in one transaction, so an event is either
//! stored or not at all; each claim first folds the events stored since the last one into
//! their hourly totals (ADR 0010). A flusher claims due hours with a lease (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), which also marks them `sending` — in flight, quantity frozen —
//! before any marketplace call; it then settles each one with its outcome, presenting the
//! lease. An hour whose flusher died stays `sending` until the lease expires and is then
//! claimed again and resent identically: the marketplaces de-duplicate identical records, so
//! a resend is never billed twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use marketlink_core::{Quantity, Subscription, SubscriptionId, UsageAllocation};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Backend, Store, StoreError, from_millis, millis, on_pool,
    rows::{SUBSCRIPTION_COLUMNS, SubscriptionRow},
};

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

/// A row of `usage_hours`: from the driver, or from the JSON array of a SQLite claim (whose
/// ids are hex strings).
#[derive(sqlx::FromRow, serde::Deserialize)]
struct UsageHourRow {
    id: Uuid,
    subscription_id: Uuid,
    marketplace: String,
    dimension: String,
    hour: i64,
    quantity_micros: i64,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    lease_id: Option<Uuid>,
    sent_quantity_micros: Option<i64>,
    marketplace_record_id: Option<String>,
    outcome: Option<String>,
    last_error: Option<String>,
    updated_at: i64,
}

const HOUR_COLUMNS: &str = "id, subscription_id, marketplace, dimension, hour, quantity_micros, \
    state, attempts, next_attempt_at, lease_id, sent_quantity_micros, marketplace_record_id, \
    outcome, last_error, updated_at";

/// [`HOUR_COLUMNS`] of an hour about to be claimed, as the elements of a SQLite `json_array`
/// (ids in hex), in [`UsageHourRow`]'s field order. The lease is left out: the claim sets it.
const SQLITE_HOUR_JSON: &str = "hex(id), hex(subscription_id), marketplace, dimension, hour, \
    quantity_micros, state, attempts, next_attempt_at, NULL, sent_quantity_micros, \
    marketplace_record_id, outcome, last_error, updated_at";

/// The ids of these hours as a JSON array of hex strings, for `json_each` on SQLite: one
/// parameter however many hours.
fn sqlite_id_list(rows: &[UsageHourRow]) -> Result<String, StoreError> {
    serde_json::to_string(
        &rows
            .iter()
            .map(|r| r.id.simple().to_string())
            .collect::<Vec<_>>(),
    )
    .map_err(|e| StoreError::Corrupt(format!("hour ids: {e}")))
}

fn quantity(micros: i64) -> Result<Quantity, StoreError> {
    Quantity::from_micros(micros).map_err(|e| StoreError::Corrupt(format!("quantity: {e}")))
}

impl TryFrom<UsageHourRow> for UsageHour {
    type Error = StoreError;
    fn try_from(row: UsageHourRow) -> Result<Self, Self::Error> {
        Ok(UsageHour {
            id: row.id,
            subscription_id: SubscriptionId(row.subscription_id),
            marketplace: row.marketplace,
            dimension: row.dimension,
            hour: from_millis(row.hour)?,
            quantity: quantity(row.quantity_micros)?,
            state: UsageHourState::parse(&row.state)?,
            attempts: row.attempts,
            next_attempt_at: from_millis(row.next_attempt_at)?,
            lease_id: row.lease_id,
            sent_quantity: row.sent_quantity_micros.map(quantity).transpose()?,
            marketplace_record_id: row.marketplace_record_id,
            outcome: row.outcome,
            last_error: row.last_error,
            allocations: Vec::new(),
            updated_at: from_millis(row.updated_at)?,
        })
    }
}

/// Hours claimed by one flusher, with their subscriptions.
#[derive(Debug, Clone)]
pub struct UsageClaim {
    pub lease_id: Uuid,
    pub hours: Vec<UsageHour>,
    pub subscriptions: HashMap<SubscriptionId, Subscription>,
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

pub(crate) type HourKey = (Uuid, String, i64);

impl StoreError {
    /// The database could not do the work, for a reason described in words (e.g. the group
    /// commit a batch was part of failed): reported like any database error.
    pub fn unavailable(message: String) -> Self {
        Self::Database(sqlx::Error::Io(std::io::Error::other(message)))
    }
}

impl Store {
    /// The subscriptions with these ids (unknown ids are left out), a few queries for a whole
    /// batch rather than one per subscription: one `= ANY(array)` on PostgreSQL, `IN` lists of
    /// a few fixed widths on SQLite (so the prepared statements are reused).
    pub async fn usage_subscriptions(
        &self,
        ids: &[SubscriptionId],
    ) -> Result<HashMap<SubscriptionId, Subscription>, StoreError> {
        let mut rows: Vec<SubscriptionRow> = Vec::with_capacity(ids.len());
        match &self.pool {
            crate::Pool::Sqlite(pool) => {
                for chunk in crate::ingest::sqlite_chunks(ids) {
                    let sql = crate::ingest::rows_sql(
                        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id IN ("),
                        "?",
                        chunk.len(),
                        ")",
                    );
                    let mut query = sqlx::query_as(&sql);
                    for id in chunk {
                        query = query.bind(id.0);
                    }
                    rows.extend(query.fetch_all(pool).await?);
                }
            }
            crate::Pool::Postgres(pool) if !ids.is_empty() => {
                rows = sqlx::query_as(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($1)"
                ))
                .bind(crate::ingest::column(ids, |id| id.0))
                .fetch_all(pool)
                .await?;
            }
            crate::Pool::Postgres(_) => {}
        }
        rows.into_iter()
            .map(|row| Subscription::try_from(row).map(|s| (s.id, s)))
            .collect()
    }

    /// Creates zero-quantity totals for a subscription's closed hours that have none, from
    /// where the last call stopped (or `first_hour` on the first call) through `through`,
    /// never further back than `oldest`. Returns how many were created.
    #[expect(
        clippy::too_many_arguments,
        reason = "one bookkeeping step, spelled out"
    )]
    pub async fn usage_fill_zero_hours(
        &self,
        subscription: SubscriptionId,
        marketplace: &str,
        dimensions: &[String],
        first_hour: OffsetDateTime,
        through: OffsetDateTime,
        oldest: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.usage_fill_zero_hours_of(
            &[(subscription, marketplace, dimensions)],
            first_hour,
            through,
            oldest,
            now,
        )
        .await
    }

    /// [`Store::usage_fill_zero_hours`] for many subscriptions (`(id, marketplace,
    /// dimensions)`) in one transaction. Subscriptions whose cursor is already past `through`
    /// (the usual case between two hours) cost one indexed read each.
    pub async fn usage_fill_zero_hours_of(
        &self,
        subscriptions: &[(SubscriptionId, &str, &[String])],
        first_hour: OffsetDateTime,
        through: OffsetDateTime,
        oldest: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if subscriptions.is_empty() {
            return Ok(0);
        }
        // Hours with usage stored but not folded yet are not empty: fold first, so that they
        // are not counted as zero rows created.
        self.usage_fold().await?;
        let rows = self.backend().insert_rows();
        let through_ms = millis(through);
        let _turn = self.write_turn().await;
        let created = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Where each subscription's zero rows start: its cursor, created on first sight.
            let mut cursors: HashMap<Uuid, i64> = HashMap::with_capacity(subscriptions.len());
            for chunk in subscriptions.chunks(rows) {
                let sql = format!(
                    "SELECT subscription_id, zero_from FROM usage_cursors WHERE subscription_id IN ({})",
                    placeholders(1, chunk.len())
                );
                let mut query = sqlx::query_as::<_, (Uuid, i64)>(&sql);
                for (id, _, _) in chunk {
                    query = query.bind(id.0);
                }
                cursors.extend(query.fetch_all(&mut *tx).await?);
            }
            let missing: Vec<Uuid> = subscriptions
                .iter()
                .map(|(id, _, _)| id.0)
                .filter(|id| !cursors.contains_key(id))
                .collect();
            for chunk in missing.chunks(rows) {
                let sql = values_sql(
                    "INSERT INTO usage_cursors (subscription_id, zero_from) VALUES ",
                    chunk.len(),
                    2,
                    "",
                    " ON CONFLICT (subscription_id) DO NOTHING",
                );
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(*id).bind(millis(first_hour));
                }
                query.execute(&mut *tx).await?;
                // Read back: a concurrent flusher may have created some first.
                let sql = format!(
                    "SELECT subscription_id, zero_from FROM usage_cursors WHERE subscription_id IN ({})",
                    placeholders(1, chunk.len())
                );
                let mut query = sqlx::query_as::<_, (Uuid, i64)>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                cursors.extend(query.fetch_all(&mut *tx).await?);
            }
            // Zero rows for the closed hours each one has not covered yet.
            let mut behind = Vec::new();
            let mut zero_rows: Vec<(Uuid, &str, i64, &String)> = Vec::new();
            for (id, marketplace, dimensions) in subscriptions {
                let Some(from) = cursors.get(&id.0).copied() else {
                    continue;
                };
                if from > through_ms {
                    continue;
                }
                behind.push(id.0);
                let mut hour = from.max(millis(oldest));
                while hour <= through_ms {
                    for d in dimensions.iter() {
                        zero_rows.push((id.0, marketplace, hour, d));
                    }
                    hour += 3_600_000;
                }
            }
            let mut created = 0;
            for chunk in zero_rows.chunks(rows) {
                let sql = values_sql(
                    "INSERT INTO usage_hours (id, subscription_id, marketplace, dimension, hour, \
                     next_attempt_at, quantity_micros, state, attempts, created_at, updated_at) \
                     VALUES ",
                    chunk.len(),
                    6,
                    ", 0, 'open', 0, $0, $0",
                    " ON CONFLICT (subscription_id, dimension, hour) DO NOTHING",
                );
                let mut query = sqlx::query(&sql);
                for (sub, marketplace, hour, dim) in chunk {
                    query = query
                        .bind(Uuid::now_v7())
                        .bind(*sub)
                        .bind(*marketplace)
                        .bind(dim.as_str())
                        .bind(*hour)
                        .bind(millis(now));
                }
                created += query.execute(&mut *tx).await?.rows_affected();
            }
            // Cursors move past `through` (never back).
            let next = through_ms + 3_600_000;
            for chunk in behind.chunks(rows) {
                let sql = format!(
                    "UPDATE usage_cursors SET zero_from = $1 \
                     WHERE zero_from < $1 AND subscription_id IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(next);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            created
        });
        Ok(created)
    }

    /// Claims up to `limit` hours to send: open hours that have closed (start at or before
    /// `closed_through`, or any open hour of a subscription in its unsubscribe-pending window:
    /// its final usage), and hours already sending whose retry is due or whose lease expired.
    /// Claimed hours are `sending`, quantity frozen, leased until `now + lease`.
    ///
    /// The claim carries the subscriptions of its hours but those `known` to the caller (from
    /// an earlier claim).
    pub async fn usage_claim(
        &self,
        now: OffsetDateTime,
        closed_through: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
        known: impl Fn(SubscriptionId) -> bool,
    ) -> Result<UsageClaim, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE OF h SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Three kinds of due hours, each read in claim order from an index and cut at
        // `limit`, so a claim costs O(limit) however much history the table holds; the first
        // `limit` of their union are the first `limit` due hours overall. On PostgreSQL each
        // kind locks its rows with SKIP LOCKED (re-checking its condition on the latest row
        // version), so concurrent flushers never claim the same hour and each goes on to the
        // next free ones.
        let due = |from: &str, condition: &str| {
            format!(
                "SELECT id, hour FROM (SELECT h.id, h.hour FROM {from} WHERE {condition} \
                 AND (h.locked_until IS NULL OR h.locked_until <= $3) \
                 ORDER BY h.hour, h.id LIMIT $5 {lock}) AS d"
            )
        };
        let due_ids = format!(
            "SELECT id FROM ({} UNION {} UNION {}) AS due ORDER BY hour, id LIMIT $5",
            // Closed hours.
            due("usage_hours h", "h.state = 'open' AND h.hour <= $4"),
            // Final usage: every open hour of a subscription in its unsubscribe-pending window.
            // From those few subscriptions to their hours by `usage_hours_key` (CROSS JOIN
            // fixes SQLite's join order, `|| ''` keeps it off the state index).
            due(
                "subscriptions s CROSS JOIN usage_hours h",
                "s.status = 'unsubscribe_pending' AND h.subscription_id = s.id \
                 AND h.state || '' = 'open'"
            ),
            // Retries due, and hours whose flusher's lease expired.
            due(
                "usage_hours h",
                "h.state = 'sending' AND h.next_attempt_at <= $3"
            ),
        );
        const MARK: &str = "UPDATE usage_hours SET state = 'sending', lease_id = $1, \
            locked_until = $2, attempts = attempts + 1, updated_at = $3, \
            sent_quantity_micros = quantity_micros, first_sent_at = COALESCE(first_sent_at, $3)";
        let lease_id = Uuid::now_v7();
        let turn = self.write_turn().await;
        let rows: Vec<UsageHourRow> = match &self.pool {
            crate::Pool::Sqlite(pool) => {
                // Read the due hours, then mark the same ones, in one transaction that holds
                // the write lock from its start. The rows come back as one JSON row rather
                // than a message per row from the driver's thread (`RETURNING`), which cost
                // more than the claim itself; the claim's own changes are applied below.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                // Events stored before this claim reach their hours before any is frozen.
                if let Err(e) = crate::fold::sqlite_fold(&mut tx).await {
                    tx.rollback().await?;
                    return Err(e);
                }
                // CROSS JOIN: from the due ids to their rows, never the other way round.
                let json: String = sqlx::query_scalar(&format!(
                    "SELECT json_group_array(json_array({SQLITE_HOUR_JSON})) FROM \
                     ({due_ids}) AS claimed CROSS JOIN usage_hours USING (id)"
                ))
                .bind(lease_id)
                .bind(millis(now + lease))
                .bind(millis(now))
                .bind(millis(closed_through))
                .bind(i64::from(limit))
                .fetch_one(&mut *tx)
                .await?;
                let mut rows: Vec<UsageHourRow> = serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("due hours: {e}")))?;
                if !rows.is_empty() {
                    // The hours just read, by id: the write lock is held, so they are still
                    // the due ones.
                    let marked = sqlx::query(&format!(
                        "{MARK} WHERE id IN (SELECT unhex(value) FROM json_each($4))"
                    ))
                    .bind(lease_id)
                    .bind(millis(now + lease))
                    .bind(millis(now))
                    .bind(sqlite_id_list(&rows)?)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if marked != rows.len() as u64 {
                        tx.rollback().await?;
                        return Err(StoreError::Corrupt(format!(
                            "claim read {} due hours but marked {marked}",
                            rows.len()
                        )));
                    }
                }
                // Also when nothing was due: the write lock must be released before the turn
                // is, not by the rollback a dropped transaction only queues.
                tx.commit().await?;
                drop(turn);
                for row in &mut rows {
                    row.state = UsageHourState::Sending.as_str().to_owned();
                    row.attempts += 1;
                    row.lease_id = Some(lease_id);
                    row.sent_quantity_micros = Some(row.quantity_micros);
                    row.updated_at = millis(now);
                }
                rows
            }
            crate::Pool::Postgres(pool) => {
                // The fold locks the ledger against writers until this transaction ends, so
                // no event can reach an hour between its fold and its freezing.
                let mut tx = pool.begin().await?;
                crate::fold::postgres_fold(&mut tx).await?;
                let rows = sqlx::query_as(&format!(
                    "{MARK} WHERE id IN ({due_ids}) RETURNING {HOUR_COLUMNS}"
                ))
                .bind(lease_id)
                .bind(millis(now + lease))
                .bind(millis(now))
                .bind(millis(closed_through))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                drop(turn);
                rows
            }
        };
        // A claimed hour is frozen: its allocations no longer change.
        let allocations = self.usage_allocations_of(&rows).await?;
        let mut missing: Vec<SubscriptionId> = rows
            .iter()
            .map(|r| SubscriptionId(r.subscription_id))
            .filter(|id| !known(*id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        missing.sort_unstable_by_key(|id| id.0);
        let subscriptions = self.usage_subscriptions(&missing).await?;
        let mut by_hour: HashMap<Uuid, Vec<UsageAllocation>> = HashMap::new();
        for (hour_id, tags, micros) in allocations {
            let tags: Vec<(String, String)> = serde_json::from_str(&tags)
                .map_err(|e| StoreError::Corrupt(format!("allocation tags: {e}")))?;
            by_hour.entry(hour_id).or_default().push(UsageAllocation {
                quantity: quantity(micros)?,
                tags,
            });
        }
        let mut hours = rows
            .into_iter()
            .map(UsageHour::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        for hour in &mut hours {
            if let Some(a) = by_hour.remove(&hour.id) {
                hour.allocations = a;
            }
        }
        hours.sort_by_key(|h| (h.hour, h.id));
        Ok(UsageClaim {
            lease_id,
            hours,
            subscriptions,
        })
    }

    /// The cost-allocation tags of these hours: `(hour id, tags JSON, micros)`.
    async fn usage_allocations_of(
        &self,
        rows: &[UsageHourRow],
    ) -> Result<Vec<(Uuid, String, i64)>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        const COLUMNS: &str = "SELECT usage_hour_id, tags, quantity_micros FROM usage_allocations";
        Ok(match &self.pool {
            crate::Pool::Sqlite(pool) => {
                sqlx::query_as(&format!(
                    "{COLUMNS} WHERE usage_hour_id IN (SELECT unhex(value) FROM json_each($1))"
                ))
                .bind(sqlite_id_list(rows)?)
                .fetch_all(pool)
                .await?
            }
            crate::Pool::Postgres(pool) => {
                sqlx::query_as(&format!("{COLUMNS} WHERE usage_hour_id = ANY($1)"))
                    .bind(crate::ingest::column(rows, |r| r.id))
                    .fetch_all(pool)
                    .await?
            }
        })
    }

    /// Records what came of sending claimed hours, in one transaction: one statement on
    /// PostgreSQL (the settlements bound as arrays), a few on SQLite (multi-row `VALUES` with
    /// `?` parameters). Hours whose lease was taken over meanwhile are left alone (their new
    /// holder settles them). Returns how many were settled.
    pub async fn usage_settle(
        &self,
        lease_id: Uuid,
        settlements: &[(Uuid, UsageSettlement)],
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if settlements.is_empty() {
            return Ok(0);
        }
        let rows: Vec<SettleRow<'_>> = settlements
            .iter()
            .map(|(id, settlement)| settle_row(*id, settlement, now))
            .collect();
        const SET: &str = "UPDATE usage_hours SET state = v.state, next_attempt_at = v.next_at, \
            marketplace_record_id = COALESCE(v.record_id, usage_hours.marketplace_record_id), \
            outcome = v.outcome, last_error = v.err, lease_id = NULL, locked_until = NULL, ";
        let _turn = self.write_turn().await;
        let settled = match &self.pool {
            crate::Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let mut settled = 0;
                for chunk in crate::ingest::sqlite_chunks(&rows) {
                    let sql = crate::ingest::rows_sql(
                        "WITH v (id, state, next_at, record_id, outcome, err) AS (VALUES ",
                        "(?,?,?,?,?,?)",
                        chunk.len(),
                        // `id IN (…)` makes SQLite look each settled hour up by key; with
                        // only the join, it scans the whole table once a chunk is large.
                        &format!(
                            ") {SET} updated_at = ? FROM v \
                             WHERE usage_hours.id IN (SELECT id FROM v) \
                             AND usage_hours.id = v.id AND usage_hours.lease_id = ?"
                        ),
                    );
                    let mut query = sqlx::query(&sql);
                    for r in chunk {
                        query = query
                            .bind(r.id)
                            .bind(r.state.as_str())
                            .bind(r.next_at)
                            .bind(r.record_id)
                            .bind(r.outcome)
                            .bind(r.error);
                    }
                    settled += query
                        .bind(millis(now))
                        .bind(lease_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                settled
            }
            crate::Pool::Postgres(pool) => sqlx::query(&format!(
                "{SET} updated_at = $7 FROM UNNEST($1::uuid[], $2::text[], $3::int8[], \
                     $4::text[], $5::text[], $6::text[]) \
                     AS v (id, state, next_at, record_id, outcome, err) \
                     WHERE usage_hours.id = v.id AND usage_hours.lease_id = $8"
            ))
            .bind(crate::ingest::column(&rows, |r| r.id))
            .bind(crate::ingest::column(&rows, |r| r.state.as_str()))
            .bind(crate::ingest::column(&rows, |r| r.next_at))
            .bind(crate::ingest::column(&rows, |r| r.record_id))
            .bind(crate::ingest::column(&rows, |r| r.outcome))
            .bind(crate::ingest::column(&rows, |r| r.error))
            .bind(millis(now))
            .bind(lease_id)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(settled)
    }

    /// Adds the events stored since the last fold to their hourly totals (ADR 0010); every
    /// claim does this first. Readers of the totals call it so that they see all usage stored
    /// so far. Returns how many hourly totals changed.
    pub async fn usage_fold(&self) -> Result<usize, StoreError> {
        let _turn = self.write_turn().await;
        match &self.pool {
            crate::Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                match crate::fold::sqlite_fold(&mut tx).await {
                    Ok(folded) => {
                        tx.commit().await?;
                        Ok(folded)
                    }
                    Err(e) => {
                        tx.rollback().await?;
                        Err(e)
                    }
                }
            }
            crate::Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let folded = crate::fold::postgres_fold(&mut tx).await?;
                tx.commit().await?;
                Ok(folded)
            }
        }
    }

    /// Hourly totals in one state (newest hour first), e.g. the dead letters.
    pub async fn usage_hours_in(
        &self,
        state: UsageHourState,
        limit: u32,
    ) -> Result<Vec<UsageHour>, StoreError> {
        self.usage_fold().await?;
        let rows: Vec<UsageHourRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {HOUR_COLUMNS} FROM usage_hours WHERE state = $1 \
                 ORDER BY hour DESC, id LIMIT $2"
            ))
            .bind(state.as_str())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(UsageHour::try_from).collect()
    }

    /// A subscription's hourly totals, oldest first.
    pub async fn usage_hours_of(
        &self,
        subscription: SubscriptionId,
    ) -> Result<Vec<UsageHour>, StoreError> {
        self.usage_fold().await?;
        let rows: Vec<UsageHourRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {HOUR_COLUMNS} FROM usage_hours WHERE subscription_id = $1 \
                 ORDER BY hour, dimension"
            ))
            .bind(subscription.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(UsageHour::try_from).collect()
    }

    /// How many events are stored for a subscription (audit ledger).
    pub async fn usage_event_count(&self, subscription: SubscriptionId) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_events WHERE subscription_id = $1")
                .bind(subscription.0)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Counts per state and the closed hours still waiting for delivery.
    pub async fn usage_backlog(
        &self,
        closed_through: OffsetDateTime,
    ) -> Result<UsageBacklog, StoreError> {
        self.usage_fold().await?;
        type Counts = (Vec<(String, i64)>, (i64, Option<i64>));
        let (states, due): Counts = on_pool!(self, |pool| {
            let states = sqlx::query_as("SELECT state, COUNT(*) FROM usage_hours GROUP BY state")
                .fetch_all(pool)
                .await?;
            let due = sqlx::query_as(
                "SELECT COUNT(*), MIN(hour) FROM usage_hours \
                 WHERE (state = 'open' AND hour <= $1) OR state = 'sending'",
            )
            .bind(millis(closed_through))
            .fetch_one(pool)
            .await?;
            (states, due)
        });
        Ok(UsageBacklog {
            by_state: states.into_iter().collect(),
            due: due.0,
            oldest_due_hour: due.1.map(from_millis).transpose()?,
        })
    }

    /// Sends a dead hour again (an operator fixed the cause): the identical frozen record goes
    /// out on the next flush, with a fresh attempt budget. Only dead hours qualify; a
    /// mismatch is the marketplace holding another quantity, which resending cannot fix.
    pub async fn usage_requeue(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE usage_hours SET state = 'sending', next_attempt_at = $1, attempts = 0, \
                 lease_id = NULL, locked_until = NULL, outcome = 'requeued', updated_at = $1 \
                 WHERE id = $2 AND state = 'dead'",
            )
            .bind(millis(now))
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound("dead usage hour"));
        }
        Ok(())
    }
}

/// A settlement as the columns it sets.
struct SettleRow<'a> {
    id: Uuid,
    state: UsageHourState,
    /// Unix milliseconds of the next attempt.
    next_at: i64,
    record_id: Option<&'a str>,
    outcome: &'a str,
    error: Option<&'a str>,
}

fn settle_row(id: Uuid, settlement: &UsageSettlement, now: OffsetDateTime) -> SettleRow<'_> {
    let row = |state, next_at, record_id, outcome, error| SettleRow {
        id,
        state,
        next_at: millis(next_at),
        record_id,
        outcome,
        error,
    };
    match settlement {
        UsageSettlement::Delivered {
            marketplace_id,
            outcome,
        } => row(
            UsageHourState::Delivered,
            now,
            marketplace_id.as_deref(),
            outcome,
            None,
        ),
        UsageSettlement::Retry { error, at } => {
            row(UsageHourState::Sending, *at, None, "retry", Some(error))
        }
        UsageSettlement::Mismatch { detail } => row(
            UsageHourState::Mismatch,
            now,
            None,
            "quantity_mismatch",
            Some(detail),
        ),
        UsageSettlement::Dead { reason } => {
            row(UsageHourState::Dead, now, None, "dead", Some(reason))
        }
        UsageSettlement::Skipped { reason } => {
            row(UsageHourState::Skipped, now, None, reason, None)
        }
    }
}

/// `prefix ($1..$k extra), ($k+1..$2k extra), ... suffix`. In `extra`, `$0` stands for the
/// row's last parameter (so literal columns can repeat it).
fn values_sql(prefix: &str, rows: usize, columns: usize, extra: &str, suffix: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + suffix.len() + rows * columns * 7);
    sql.push_str(prefix);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push_str(&extra.replace("$0", &format!("${n}")));
        sql.push(')');
    }
    sql.push_str(suffix);
    sql
}

/// `$first,$first+1,...` for `n` parameters: an `IN (...)` list.
fn placeholders(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    list.join(",")
}

/// A tag set as a canonical text key (sorted pairs as JSON).
pub(crate) fn tags_key(tags: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = tags.iter().collect();
    sorted.sort();
    serde_json::to_string(&sorted).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_number_parameters_and_repeat_the_last() {
        assert_eq!(
            values_sql("V ", 2, 2, ", 'x', $0", ";"),
            "V ($1,$2, 'x', $2),($3,$4, 'x', $4);"
        );
    }
}
