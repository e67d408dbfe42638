//! The day's world before the server starts: a fresh PostgreSQL database holding the
//! subscriptions, and the same buyers subscribed in the AWS sandbox.

use std::collections::HashMap;

use marketlink_core::{Clock, SystemClock};
use marketlink_sandbox::aws::AwsSandbox;
use marketlink_store::{Store, StoreOptions};
use sqlx::{Connection, Executor};

use super::{super::seed::aws_subscribed, DayArgs};

/// Buyer accounts are numbered from here (12 digits).
const FIRST_ACCOUNT: u64 = 400_000_000_000;

/// What the clients and the verdict need to know about the seeded subscriptions.
pub(super) struct World {
    /// marketlink's id of each subscription, as the usage API takes it.
    pub ids: Vec<String>,
    /// The AWS CustomerIdentifier → the subscription's index.
    pub by_customer: HashMap<String, usize>,
}

/// Subscribes the buyers in the sandbox and writes their subscriptions (active, plan "pro",
/// one tenant each) with the store's bulk inserts, as `marketlink bench startup` does.
pub(super) async fn seed(
    args: &DayArgs,
    database: &str,
    aws: &AwsSandbox,
) -> anyhow::Result<World> {
    let store = Store::connect(database, &StoreOptions::default()).await?;
    store.migrate().await?;
    let seeded = aws_subscribed(
        aws,
        &store,
        FIRST_ACCOUNT,
        args.subscriptions,
        Some("pro"),
        SystemClock.now(),
    )
    .await;
    store.close().await;
    let seeded = seeded?;
    Ok(World {
        ids: seeded
            .subscriptions
            .iter()
            .map(|s| s.id.to_string())
            .collect(),
        by_customer: seeded
            .purchases
            .iter()
            .enumerate()
            .map(|(i, p)| (p.customer_identifier.clone(), i))
            .collect(),
    })
}

/// How often the stand-in for autovacuum runs on a server that has it off.
const VACUUM_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A database in service is vacuumed and analysed by autovacuum (on by default). A server
/// with `autovacuum = off` (the project's test server) would leave the planner without
/// statistics for tables that grow from empty during the run, so its cached plans keep
/// scanning whole tables, and the due index full of dead entries: a benchmark of a
/// configuration no operator runs. On such a server this runs `VACUUM (ANALYZE)` on the
/// database every 30 s instead, until `stop`; it says so.
pub(super) async fn autovacuum_stand_in(
    database: &str,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let mut conn = sqlx::PgConnection::connect(database).await?;
    let setting: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&mut conn)
        .await?;
    if setting == "on" {
        return Ok(None);
    }
    println!("  autovacuum is off on this server: VACUUM (ANALYZE) every {VACUUM_EVERY:?} instead");
    Ok(Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(VACUUM_EVERY) => {}
            }
            if let Err(e) = conn.execute("VACUUM (ANALYZE)").await {
                eprintln!("  VACUUM (ANALYZE) failed: {e}");
            }
        }
    })))
}
