//! Folding usage into hourly totals (ADR 0010, 0026): the events stored since the last fold are
//! summed per subscription, dimension and hour and added to `usage_hours` (and their tags to
//! `usage_allocations`), then the watermark in `usage_fold` moves past them.
//!
//! A fold runs inside every claim, so an hour is never frozen with events of it still
//! unfolded. On SQLite the claim holds the write lock from its start and folds in the
//! transaction that freezes hours. On PostgreSQL a fold reads up to a bound set by a brief
//! barrier ([`postgres_barrier`]: the ledger locked against writers only until the requests
//! already inserting have ended), so every event at or below it is committed or gone; the
//! fold itself runs without the ledger's lock, beside ingest, serialized against other folds by
//! the `usage_fold` row. A claim marks its hours `sending` before its last barrier, so a
//! request that comes after finds them claimed and is refused (ingest), and folds into them
//! once more after that barrier before it freezes them for good (ADR 0026, `claim`).

use std::collections::{BTreeMap, HashMap};

use marketlink_core::UsageAllocation;
use sqlx::{PgConnection, PgPool, Postgres, SqliteConnection, Transaction};
use uuid::Uuid;

use crate::{
    Pool, Store, StoreError,
    bind_lists::{anonymous_rows, array_column, sqlite_chunks},
    from_millis,
};

impl Store {
    /// Adds the events stored since the last fold to their hourly totals (ADR 0010, 0026);
    /// every claim does this first. Readers of the totals call it so that they see all usage
    /// stored before the call. Returns how many hourly totals changed.
    pub async fn usage_fold(&self) -> Result<usize, StoreError> {
        let _turn = self.write_turn().await;
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                match sqlite_fold(&mut tx).await {
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
            Pool::Postgres(pool) => {
                let (tx, folded) = postgres_fold_stored(pool).await?;
                tx.commit().await?;
                Ok(folded)
            }
        }
    }
}

/// One hourly total's identity: `(subscription, dimension, hour in Unix milliseconds)`.
type HourKey = (Uuid, String, i64);

/// A tag set as a canonical text key (sorted pairs as JSON).
fn tags_key(tags: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = tags.iter().collect();
    sorted.sort();
    serde_json::to_string(&sorted).unwrap_or_default()
}

/// Events summed into one hourly total: `(marketplace, quantity, allocated quantity per tag
/// set)`.
type Group<'a> = (&'a str, i64, BTreeMap<String, i64>);

/// The unfolded events of one hour, as read from the ledger.
#[derive(Debug, serde::Deserialize, sqlx::FromRow)]
struct FoldRow {
    subscription_id: Uuid,
    /// `None` if the subscription is missing (never deleted: a corrupt database).
    marketplace: Option<String>,
    dimension: String,
    hour: i64,
    /// The events' whole units and the sum of their fractions (in micro-units).
    units: i64,
    micros: i64,
    /// The newest event in it (`received_at`): the hour's `updated_at`.
    received_at: i64,
}

impl FoldRow {
    /// The hour's added quantity in micro-units, saturating at [`MAX_HOUR_MICROS`].
    fn quantity(&self) -> i64 {
        self.units
            .checked_mul(1_000_000)
            .and_then(|q| q.checked_add(self.micros))
            .map_or(MAX_HOUR_MICROS, |q| q.min(MAX_HOUR_MICROS))
    }
}

/// An unfolded event with cost-allocation tags (rare): `allocations` as stored (JSON).
#[derive(Debug, serde::Deserialize, sqlx::FromRow)]
struct TaggedRow {
    subscription_id: Uuid,
    dimension: String,
    hour: i64,
    allocations: String,
}

/// What one fold read: the hours to add to, and the tagged events among them.
struct Unfolded {
    rows: Vec<FoldRow>,
    tagged: Vec<TaggedRow>,
}

impl Unfolded {
    /// The hourly deltas in claim order (hour, then subscription and dimension), and the newest
    /// `received_at` among them. New totals are thereby written hour by hour, as claims read
    /// them: a backlog folded at once would otherwise lay each hour's rows all over the table,
    /// and every claim would touch a page per row.
    fn groups(&self) -> Result<(Vec<(HourKey, Group<'_>)>, i64), StoreError> {
        let mut groups: BTreeMap<HourKey, Group<'_>> = BTreeMap::new();
        let mut newest = 0;
        for row in &self.rows {
            let marketplace = row.marketplace.as_deref().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "usage events of unknown subscription {}",
                    row.subscription_id
                ))
            })?;
            newest = newest.max(row.received_at);
            groups.insert(
                (row.subscription_id, row.dimension.clone(), row.hour),
                (marketplace, row.quantity(), BTreeMap::new()),
            );
        }
        for row in &self.tagged {
            let allocations: Vec<UsageAllocation> = serde_json::from_str(&row.allocations)
                .map_err(|e| StoreError::Corrupt(format!("usage event allocations: {e}")))?;
            let key = (row.subscription_id, row.dimension.clone(), row.hour);
            let Some((_, _, tags)) = groups.get_mut(&key) else {
                return Err(StoreError::Corrupt(
                    "tagged usage event outside the hours being folded".into(),
                ));
            };
            for a in allocations {
                let sum = tags.entry(tags_key(&a.tags)).or_insert(0);
                *sum = sum.saturating_add(a.quantity.micros()).min(MAX_HOUR_MICROS);
            }
        }
        let mut groups: Vec<(HourKey, Group<'_>)> = groups.into_iter().collect();
        groups.sort_by(|((sub_a, dim_a, hour_a), _), ((sub_b, dim_b, hour_b), _)| {
            (hour_a, sub_a, dim_a).cmp(&(hour_b, sub_b, dim_b))
        });
        Ok((groups, newest))
    }
}

/// The refusal of usage for an hour that has been claimed for sending.
pub(super) fn hour_already_sent(dimension: &str, hour: i64) -> StoreError {
    match from_millis(hour) {
        Ok(hour) => StoreError::Conflict(format!(
            "usage of `{dimension}` for the hour starting {hour} has already been sent to the \
             marketplace; report it in a later hour"
        )),
        Err(e) => e,
    }
}

/// Deltas that found their hour frozen: the claim that froze it should have folded them
/// first, so this is a broken invariant. Refused loudly rather than dropped.
fn frozen_during_fold(
    groups: &[(HourKey, Group<'_>)],
    open: &HashMap<HourKey, Uuid>,
) -> Result<(), StoreError> {
    match groups.iter().find(|(key, _)| !open.contains_key(key)) {
        Some(((sub, dimension, hour), _)) => Err(StoreError::Corrupt(format!(
            "usage of `{dimension}` of subscription {sub} for hour {hour} reached its total \
             after the hour was claimed; the events are kept in the ledger, unfolded"
        ))),
        None => Ok(()),
    }
}

/// Allocation rows to add: `(hour id, tag set, quantity)`.
fn allocation_rows(
    groups: &[(HourKey, Group<'_>)],
    hour_ids: &HashMap<HourKey, Uuid>,
) -> Vec<(Uuid, String, i64)> {
    let mut rows = Vec::new();
    for (key, (_, _, allocations)) in groups {
        if let Some(id) = hour_ids.get(key) {
            rows.extend(allocations.iter().map(|(tags, q)| (*id, tags.clone(), *q)));
        }
    }
    rows
}

const HOUR_INSERT: &str = "INSERT INTO usage_hours (id, subscription_id, marketplace, dimension, \
    hour, quantity_micros, next_attempt_at, created_at, updated_at, state, attempts) ";

/// The largest hourly total, in micro-units (about 4.6 trillion units): totals saturate here
/// rather than overflow, so one runaway hour cannot make every fold fail. Two totals at the
/// cap still add up without overflowing 64 bits. The flusher dead-letters an hour at the cap.
pub const MAX_HOUR_MICROS: i64 = i64::MAX / 2;

/// The upsert of an hourly total, saturating at [`MAX_HOUR_MICROS`] (`min` is SQLite's
/// two-argument `MIN`, PostgreSQL's `LEAST`). A mismatched hour takes usage too and opens
/// again, to be resent with the corrected total: the marketplace refused the quantity we sent,
/// and bills an hour once whatever we resend (ADR 0005, "Corrections"). This is how the usage
/// a restored database lost reaches an hour it zero-filled or sent short meanwhile.
///
/// With `pending`, an hour claimed by a claim not done yet (`sending` under a lease in
/// `usage_pending_claims`, PostgreSQL, ADR 0026) takes usage too, stays `sending` and keeps
/// its sent quantity equal to its total: its claim freezes it for good after its barrier,
/// which every event of it precedes, so whoever folds them is fine.
fn hour_upsert(min: &str, pending: bool) -> String {
    let total =
        format!("{min}(usage_hours.quantity_micros + excluded.quantity_micros, {MAX_HOUR_MICROS})");
    let (state, sent, foldable) = if pending {
        (
            "CASE usage_hours.state WHEN 'sending' THEN 'sending' ELSE 'open' END",
            format!("CASE usage_hours.state WHEN 'sending' THEN {total} END"),
            " OR (usage_hours.state = 'sending' AND usage_hours.lease_id IN \
             (SELECT lease_id FROM usage_pending_claims))",
        )
    } else {
        ("'open'", "NULL".to_owned(), "")
    };
    format!(
        " ON CONFLICT (subscription_id, dimension, hour) DO UPDATE \
         SET quantity_micros = {total}, updated_at = excluded.updated_at, state = {state}, \
         sent_quantity_micros = {sent} WHERE usage_hours.state IN ('open', {REOPENS}){foldable}"
    )
}

/// The state of a sent hour that new usage opens again (quoted for SQL).
pub(super) const REOPENS: &str = "'mismatch'";

/// The upsert of an allocation, saturating like [`hour_upsert`].
fn allocation_upsert(min: &str) -> String {
    format!(
        " ON CONFLICT (usage_hour_id, tags) DO UPDATE SET quantity_micros = \
         {min}(usage_allocations.quantity_micros + excluded.quantity_micros, {MAX_HOUR_MICROS})"
    )
}

/// The hours of the unfolded events, summed in SQL: those after the watermark `$1` up to and
/// including the bound `$2` (later ones may still be committing on PostgreSQL). Whole units and
/// their fractions are summed apart, so the sums cannot overflow 64 bits (events carry at
/// most 2^31 units); [`FoldRow::quantity`] puts them together, saturating.
const UNFOLDED_HOURS: &str = "SELECT g.subscription_id AS subscription_id, \
    s.marketplace AS marketplace, g.dimension AS dimension, g.hour AS hour, \
    g.units AS units, g.micros AS micros, g.received_at AS received_at \
    FROM (SELECT subscription_id, dimension, hour, \
    SUM(quantity_micros / 1000000) AS units, SUM(quantity_micros % 1000000) AS micros, \
    MAX(received_at) AS received_at \
    FROM usage_events WHERE seq > $1 AND seq <= $2 GROUP BY subscription_id, dimension, hour) AS g \
    LEFT JOIN subscriptions s ON s.id = g.subscription_id";

/// The tagged events among them (the same `$1` and `$2`).
const UNFOLDED_TAGS: &str =
    "FROM usage_events WHERE seq > $1 AND seq <= $2 AND allocations IS NOT NULL";

/// The watermark and the newest event (SQLite, under the write lock): nothing to fold unless
/// the second is past the first.
const WATERMARKS: &str =
    "SELECT folded_through, (SELECT MAX(seq) FROM usage_events) FROM usage_fold WHERE id = 1";

/// The last step of a fold: `$1` is the newest event folded.
const MOVE_WATERMARK: &str = "UPDATE usage_fold SET folded_through = $1 WHERE id = 1";

/// Folds every event past the watermark on SQLite, inside `tx`, which must hold the write
/// lock (`BEGIN IMMEDIATE`). Returns how many hourly totals it added to.
pub(super) async fn sqlite_fold(tx: &mut SqliteConnection) -> Result<usize, StoreError> {
    let (watermark, through): (i64, Option<i64>) =
        sqlx::query_as(WATERMARKS).fetch_one(&mut *tx).await?;
    let Some(through) = through.filter(|t| *t > watermark) else {
        return Ok(0);
    };
    let unfolded = sqlite_unfolded(tx, watermark, through).await?;
    let (groups, newest) = unfolded.groups()?;
    for chunk in sqlite_chunks(&groups) {
        let sql = anonymous_rows(
            &format!("{HOUR_INSERT} VALUES "),
            "(?,?,?,?,?,?,?,?,?,'open',0)",
            chunk.len(),
            &hour_upsert("MIN", false),
        );
        let mut query = sqlx::query(&sql);
        for ((sub, dimension, hour), (marketplace, quantity, _)) in chunk {
            query = query
                .bind(Uuid::now_v7())
                .bind(*sub)
                .bind(*marketplace)
                .bind(dimension.as_str())
                .bind(*hour)
                .bind(*quantity)
                .bind(newest)
                .bind(newest)
                .bind(newest);
        }
        // An upsert counts each row it inserted or added to; a frozen hour is not counted.
        if query.execute(&mut *tx).await?.rows_affected() < chunk.len() as u64 {
            frozen_during_fold(chunk, &sqlite_open_hour_ids(tx, chunk).await?)?;
        }
    }
    let tagged: Vec<(HourKey, Group<'_>)> = groups
        .iter()
        .filter(|(_, (_, _, allocations))| !allocations.is_empty())
        .cloned()
        .collect();
    let allocations = allocation_rows(&tagged, &sqlite_open_hour_ids(tx, &tagged).await?);
    for chunk in sqlite_chunks(&allocations) {
        let sql = anonymous_rows(
            "INSERT INTO usage_allocations (usage_hour_id, tags, quantity_micros) VALUES ",
            "(?,?,?)",
            chunk.len(),
            &allocation_upsert("MIN"),
        );
        let mut query = sqlx::query(&sql);
        for (id, tags, quantity) in chunk {
            query = query.bind(*id).bind(tags.as_str()).bind(*quantity);
        }
        query.execute(&mut *tx).await?;
    }
    sqlx::query(MOVE_WATERMARK)
        .bind(through)
        .execute(&mut *tx)
        .await?;
    Ok(groups.len())
}

/// The events in `(watermark, through]` on SQLite, each read as one JSON row rather than a
/// driver message per row (ADR 0008).
async fn sqlite_unfolded(
    tx: &mut SqliteConnection,
    watermark: i64,
    through: i64,
) -> Result<Unfolded, StoreError> {
    let json: String = sqlx::query_scalar(&format!(
        "SELECT json_group_array(json_object('subscription_id', hex(subscription_id), \
         'marketplace', marketplace, 'dimension', dimension, 'hour', hour, \
         'units', units, 'micros', micros, 'received_at', received_at)) \
         FROM ({UNFOLDED_HOURS})"
    ))
    .bind(watermark)
    .bind(through)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<FoldRow> = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("unfolded usage: {e}")))?;
    let json: String = sqlx::query_scalar(&format!(
        "SELECT json_group_array(json_object('subscription_id', hex(subscription_id), \
         'dimension', dimension, 'hour', hour, 'allocations', allocations)) {UNFOLDED_TAGS}"
    ))
    .bind(watermark)
    .bind(through)
    .fetch_one(&mut *tx)
    .await?;
    let tagged: Vec<TaggedRow> = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("unfolded usage tags: {e}")))?;
    Ok(Unfolded { rows, tagged })
}

/// The ids of these hourly totals that are open (still, or again after a mismatch).
async fn sqlite_open_hour_ids(
    tx: &mut SqliteConnection,
    groups: &[(HourKey, Group<'_>)],
) -> Result<HashMap<HourKey, Uuid>, StoreError> {
    let mut ids = HashMap::with_capacity(groups.len());
    for chunk in sqlite_chunks(groups) {
        let sql = anonymous_rows(
            "SELECT id, subscription_id, dimension, hour FROM usage_hours \
             WHERE state = 'open' AND (subscription_id, dimension, hour) IN (VALUES ",
            "(?,?,?)",
            chunk.len(),
            ")",
        );
        let mut query = sqlx::query_as::<_, (Uuid, Uuid, String, i64)>(&sql);
        for ((sub, dimension, hour), _) in chunk {
            query = query.bind(*sub).bind(dimension.as_str()).bind(*hour);
        }
        for (id, sub, dimension, hour) in query.fetch_all(&mut *tx).await? {
            ids.insert((sub, dimension, hour), id);
        }
    }
    Ok(ids)
}

/// The barrier of a fold on PostgreSQL (ADR 0026), in a transaction of its own: locks the
/// ledger against writers (`SHARE ROW EXCLUSIVE`), which waits for every request still
/// inserting events and holds new ones off only until it commits, at once. Returns the newest
/// event then: its sequence caches no values (ADR 0010), so every event at or below it is
/// committed or gone, and none can appear there later.
pub(super) async fn postgres_barrier(pool: &PgPool) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE usage_events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM usage_events")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(newest)
}

/// Folds every event stored before the call on PostgreSQL: a barrier, then the fold through
/// it in a transaction that is returned open (a claim freezes hours in it). Returns how many
/// hourly totals it added to.
pub(super) async fn postgres_fold_stored(
    pool: &PgPool,
) -> Result<(Transaction<'static, Postgres>, usize), StoreError> {
    let through = postgres_barrier(pool).await?;
    let mut tx = pool.begin().await?;
    let folded = postgres_fold(&mut tx, through).await?;
    Ok((tx, folded))
}

/// Folds the events past the watermark up to `through` (a barrier's) on PostgreSQL, inside
/// `tx`, without the ledger's lock: the `usage_fold` row, locked first, makes folds take turns,
/// and each reads the watermark its predecessor left. Returns how many hourly totals it added
/// to.
async fn postgres_fold(tx: &mut PgConnection, through: i64) -> Result<usize, StoreError> {
    let watermark: i64 =
        sqlx::query_scalar("SELECT folded_through FROM usage_fold WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    if through <= watermark {
        return Ok(0);
    }
    let rows: Vec<FoldRow> = sqlx::query_as(&format!(
        "SELECT subscription_id, marketplace, dimension, hour, units::int8, micros::int8, \
         received_at::int8 FROM ({UNFOLDED_HOURS}) AS u"
    ))
    .bind(watermark)
    .bind(through)
    .fetch_all(&mut *tx)
    .await?;
    let tagged: Vec<TaggedRow> = sqlx::query_as(&format!(
        "SELECT subscription_id, dimension, hour, allocations::text AS allocations \
         {UNFOLDED_TAGS}"
    ))
    .bind(watermark)
    .bind(through)
    .fetch_all(&mut *tx)
    .await?;
    let unfolded = Unfolded { rows, tagged };
    let (groups, newest) = unfolded.groups()?;
    let open: HashMap<HourKey, Uuid> = sqlx::query_as::<_, (Uuid, Uuid, String, i64)>(&format!(
        "{HOUR_INSERT} SELECT id, sub, marketplace, dim, hour, qty, $7::int8, $7::int8, $7::int8, \
         'open', 0 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[], \
         $6::int8[]) AS h (id, sub, marketplace, dim, hour, qty) {} \
         RETURNING id, subscription_id, dimension, hour",
        hour_upsert("LEAST", true)
    ))
    .bind(array_column(&groups, |_| Uuid::now_v7()))
    .bind(array_column(&groups, |((sub, _, _), _)| *sub))
    .bind(array_column(&groups, |(_, (m, _, _))| *m))
    .bind(array_column(&groups, |((_, d, _), _)| d.as_str()))
    .bind(array_column(&groups, |((_, _, h), _)| *h))
    .bind(array_column(&groups, |(_, (_, q, _))| *q))
    .bind(newest)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(id, sub, dimension, hour)| ((sub, dimension, hour), id))
    .collect();
    frozen_during_fold(&groups, &open)?;
    let allocations = allocation_rows(&groups, &open);
    if !allocations.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO usage_allocations (usage_hour_id, tags, quantity_micros) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) {}",
            allocation_upsert("LEAST")
        ))
        .bind(array_column(&allocations, |(id, _, _)| *id))
        .bind(array_column(&allocations, |(_, t, _)| t.as_str()))
        .bind(array_column(&allocations, |(_, _, q)| *q))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(MOVE_WATERMARK)
        .bind(through)
        .execute(&mut *tx)
        .await?;
    Ok(groups.len())
}
