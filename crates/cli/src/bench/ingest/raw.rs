//! The ingest benchmark's baseline: the same rows written by plain sqlx.

use std::time::Instant;

use anyhow::Context;
use futures_util::TryStreamExt;
use marketlink_core::{Clock, SystemClock};
use marketlink_engine::metering::UsageInput;

const COLUMNS: &str = "id, subscription_id, dimension, hour, occurred_at, quantity_micros, idempotency_key, received_at";

/// The same rows written by plain sqlx, one transaction per batch (`clients` at a time), into
/// an identical table without the unique key, aggregation or validation, with the statement
/// shape the store uses on that backend (ADR 0008): multi-row `VALUES` with `?` parameters,
/// 256 rows a statement, on SQLite; one `INSERT … SELECT FROM UNNEST(arrays)` per batch on
/// PostgreSQL. Returns rows per second.
///
/// With `keyed`, the table also has the idempotency key's unique index, as `usage_events` does:
/// the floor of what any ingest with that guarantee can do.
pub(super) async fn raw_insert(
    url: &str,
    inputs: &[UsageInput],
    batch: usize,
    keyed: bool,
    clients: usize,
) -> anyhow::Result<f64> {
    let table = Table {
        name: format!("raw_{}events_{clients}", if keyed { "keyed_" } else { "" }),
        keyed,
    };
    let rows = rows(inputs)?;
    if url.starts_with("sqlite:") {
        sqlite(url, &table, &rows, batch, clients).await
    } else {
        postgres(url, &table, &rows, batch, clients).await
    }
}

/// The baseline's table.
struct Table {
    name: String,
    keyed: bool,
}

impl Table {
    /// `CREATE TABLE` with `id` as the type of the id columns.
    fn create(&self, id: &str) -> String {
        format!(
            "CREATE TABLE {} (id {id} PRIMARY KEY, subscription_id {id} NOT NULL, \
             dimension TEXT NOT NULL, hour BIGINT NOT NULL, occurred_at BIGINT NOT NULL, \
             quantity_micros BIGINT NOT NULL, idempotency_key TEXT, received_at BIGINT NOT NULL{})",
            self.name,
            if self.keyed {
                ", UNIQUE (subscription_id, idempotency_key)"
            } else {
                ""
            }
        )
    }
}

/// One row as written: the columns of [`COLUMNS`] but the id, made at write time.
struct Row<'a> {
    subscription: uuid::Uuid,
    dimension: &'a str,
    hour: i64,
    occurred_at: i64,
    quantity_micros: i64,
    key: Option<&'a str>,
    received_at: i64,
}

fn rows(inputs: &[UsageInput]) -> anyhow::Result<Vec<Row<'_>>> {
    let now = SystemClock.now().unix_timestamp() * 1000;
    inputs
        .iter()
        .map(|e| {
            let t = e.timestamp.unix_timestamp() * 1000;
            Ok(Row {
                subscription: e
                    .subscription_id
                    .context("an event without subscription")?
                    .0,
                dimension: &e.dimension,
                hour: t - t % 3_600_000,
                occurred_at: t,
                quantity_micros: e.quantity.micros(),
                key: e.idempotency_key.as_deref(),
                received_at: now,
            })
        })
        .collect()
}

async fn sqlite(
    url: &str,
    table: &Table,
    rows: &[Row<'_>],
    batch: usize,
    clients: usize,
) -> anyhow::Result<f64> {
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
    let options = options
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    // One connection: SQLite has one writer, and more connections would only meet in its busy
    // handler's sleeps.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query(&table.create("BLOB")).execute(&pool).await?;
    let rate = timed_batches(rows, batch, clients, |batch_rows| {
        let pool = &pool;
        async move {
            let mut tx = pool.begin().await?;
            for chunk in batch_rows.chunks(256) {
                let values = vec!["(?,?,?,?,?,?,?,?)"; chunk.len()].join(",");
                let sql = format!("INSERT INTO {} ({COLUMNS}) VALUES {values}", table.name);
                let mut q = sqlx::query(&sql);
                for row in chunk {
                    q = q
                        .bind(uuid::Uuid::now_v7())
                        .bind(row.subscription)
                        .bind(row.dimension)
                        .bind(row.hour)
                        .bind(row.occurred_at)
                        .bind(row.quantity_micros)
                        .bind(row.key)
                        .bind(row.received_at);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        }
    })
    .await?;
    pool.close().await;
    Ok(rate)
}

async fn postgres(
    url: &str,
    table: &Table,
    rows: &[Row<'_>],
    batch: usize,
    clients: usize,
) -> anyhow::Result<f64> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(clients)?)
        .connect(url)
        .await?;
    sqlx::query(&table.create("UUID")).execute(&pool).await?;
    let sql = format!(
        "INSERT INTO {} ({COLUMNS}) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], \
         $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::int8[])",
        table.name
    );
    let rate = timed_batches(rows, batch, clients, |chunk| {
        let (pool, sql) = (&pool, &sql);
        async move {
            let column = |f: fn(&Row<'_>) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
            let mut tx = pool.begin().await?;
            sqlx::query(sql)
                .bind(
                    chunk
                        .iter()
                        .map(|_| uuid::Uuid::now_v7())
                        .collect::<Vec<_>>(),
                )
                .bind(chunk.iter().map(|r| r.subscription).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.dimension).collect::<Vec<_>>())
                .bind(column(|r| r.hour))
                .bind(column(|r| r.occurred_at))
                .bind(column(|r| r.quantity_micros))
                .bind(chunk.iter().map(|r| r.key).collect::<Vec<_>>())
                .bind(column(|r| r.received_at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    })
    .await?;
    pool.close().await;
    Ok(rate)
}

/// Writes `rows` in batches of `batch` with `insert`, `clients` batches at a time; returns the
/// rate in rows per second.
async fn timed_batches<'r, 'a, F, Fut>(
    rows: &'r [Row<'a>],
    batch: usize,
    clients: usize,
    insert: F,
) -> anyhow::Result<f64>
where
    F: FnMut(&'r [Row<'a>]) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    futures_util::stream::iter(rows.chunks(batch).map(Ok))
        .try_for_each_concurrent(clients, insert)
        .await?;
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}
