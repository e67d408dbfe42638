//! The day's world before the server starts: a fresh PostgreSQL database holding the
//! subscriptions, and the same buyers subscribed in the AWS sandbox.

use std::collections::HashMap;

use anyhow::Context;
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

/// Creates an empty database on the server `admin` points at; its URL.
pub(super) async fn fresh_database(admin: &str) -> anyhow::Result<String> {
    let name = format!("marketlink_day_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .with_context(|| format!("PostgreSQL at {}", marketlink_store::redact_url(admin)))?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// Drops a database made by [`fresh_database`].
pub(super) async fn drop_database(admin: &str, url: &str) -> anyhow::Result<()> {
    let name = url.rsplit_once('/').map_or(url, |(_, name)| name);
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    Ok(())
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
