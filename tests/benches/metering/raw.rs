//! The ingest benchmark's baseline: the same rows written by plain sqlx.

use std::time::Instant;

use futures_util::StreamExt;
use marketlink_core::{Clock, SystemClock};
use marketlink_engine::metering::UsageInput;

/// The same rows written by plain sqlx, one transaction per batch (`clients` at a time), into an identical table
/// without the unique key, aggregation or validation, with the statement shape the store uses
/// on that backend (ADR 0008): multi-row `VALUES` with `?` parameters, 256 rows a statement,
/// on SQLite; one `INSERT … SELECT FROM UNNEST(arrays)` per batch on PostgreSQL.
///
/// With `keyed`, the table also has the idempotency key's unique index, as `usage_events` does:
/// the floor of what any ingest with that guarantee can do.
pub async fn raw_insert(
    url: &str,
    inputs: &[UsageInput],
    batch: usize,
    keyed: bool,
    clients: usize,
) -> f64 {
    let table = format!("raw_{}events_{clients}", if keyed { "keyed_" } else { "" });
    let table = table.as_str();
    let now = SystemClock.now().unix_timestamp() * 1000;
    let hour = |e: &UsageInput| {
        let t = e.timestamp.unix_timestamp() * 1000;
        (t - t % 3_600_000, t)
    };
    let create = |id: &str| {
        format!(
            "CREATE TABLE {table} (id {id} PRIMARY KEY, subscription_id {id} NOT NULL, \
             dimension TEXT NOT NULL, hour BIGINT NOT NULL, occurred_at BIGINT NOT NULL, \
             quantity_micros BIGINT NOT NULL, idempotency_key TEXT, received_at BIGINT NOT NULL{})",
            if keyed {
                ", UNIQUE (subscription_id, idempotency_key)"
            } else {
                ""
            }
        )
    };
    const COLUMNS: &str = "id, subscription_id, dimension, hour, occurred_at, quantity_micros, idempotency_key, received_at";
    let batches = || futures_util::stream::iter(inputs.chunks(batch));
    if url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let options = options
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        // One connection: SQLite has one writer, and more connections would only meet in
        // its busy handler's sleeps.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query(&create("BLOB")).execute(&pool).await.unwrap();
        let started = Instant::now();
        batches()
            .for_each_concurrent(clients, |batch_inputs| {
                let pool = &pool;
                async move {
                    let mut tx = pool.begin().await.unwrap();
                    for chunk in batch_inputs.chunks(256) {
                        let rows = vec!["(?,?,?,?,?,?,?,?)"; chunk.len()].join(",");
                        let sql = format!("INSERT INTO {table} ({COLUMNS}) VALUES {rows}");
                        let mut q = sqlx::query(&sql);
                        for e in chunk {
                            let (hour, t) = hour(e);
                            q = q
                                .bind(uuid::Uuid::now_v7())
                                .bind(e.subscription_id.unwrap().0)
                                .bind(&e.dimension)
                                .bind(hour)
                                .bind(t)
                                .bind(e.quantity.micros())
                                .bind(e.idempotency_key.as_deref())
                                .bind(now);
                        }
                        q.execute(&mut *tx).await.unwrap();
                    }
                    tx.commit().await.unwrap();
                }
            })
            .await;
        let rate = inputs.len() as f64 / started.elapsed().as_secs_f64();
        pool.close().await;
        rate
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(clients as u32)
            .connect(url)
            .await
            .unwrap();
        sqlx::query(&create("UUID")).execute(&pool).await.unwrap();
        let sql = format!(
            "INSERT INTO {table} ({COLUMNS}) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], \
             $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::int8[])"
        );
        let started = Instant::now();
        batches()
            .for_each_concurrent(clients, |chunk| {
                let (pool, sql) = (&pool, &sql);
                async move {
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query(sql)
                        .bind(
                            chunk
                                .iter()
                                .map(|_| uuid::Uuid::now_v7())
                                .collect::<Vec<_>>(),
                        )
                        .bind(
                            chunk
                                .iter()
                                .map(|e| e.subscription_id.unwrap().0)
                                .collect::<Vec<_>>(),
                        )
                        .bind(
                            chunk
                                .iter()
                                .map(|e| e.dimension.as_str())
                                .collect::<Vec<_>>(),
                        )
                        .bind(chunk.iter().map(|e| hour(e).0).collect::<Vec<_>>())
                        .bind(chunk.iter().map(|e| hour(e).1).collect::<Vec<_>>())
                        .bind(
                            chunk
                                .iter()
                                .map(|e| e.quantity.micros())
                                .collect::<Vec<_>>(),
                        )
                        .bind(
                            chunk
                                .iter()
                                .map(|e| e.idempotency_key.as_deref())
                                .collect::<Vec<_>>(),
                        )
                        .bind(vec![now; chunk.len()])
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
            .await;
        let rate = inputs.len() as f64 / started.elapsed().as_secs_f64();
        pool.close().await;
        rate
    }
}
