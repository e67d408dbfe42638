//! The day's world before the server starts: a fresh PostgreSQL database holding the
//! subscriptions, and the same buyers subscribed in the AWS sandbox.

use std::collections::HashMap;

use anyhow::Context;
use marketlink_core::{
    Clock, ExternalRef, Marketplace, PlanId, ProductId, Subscription, SubscriptionStatus,
    SystemClock,
};
use marketlink_sandbox::aws::AwsSandbox;
use marketlink_store::{Store, StoreOptions};
use sqlx::{Connection, Executor};

use super::DayArgs;

/// The demo catalog's product listed as this AWS product code; its "pro" plan meters
/// `api_calls`.
const PRODUCT_CODE: &str = "mlsandboxclassic0000000001";
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
    let now = SystemClock.now();
    let purchases = aws.seed_subscribed(PRODUCT_CODE, FIRST_ACCOUNT, args.subscriptions)?;
    let tenants = super::super::tenants(args.subscriptions, now)?;
    let rows: Vec<Subscription> = purchases
        .iter()
        .zip(&tenants)
        .map(|(purchase, tenant)| {
            let mut s = Subscription::pending(
                ExternalRef {
                    marketplace: Marketplace::AWS,
                    external_id: ExternalRef::aws_classic_id(
                        &purchase.customer_identifier,
                        PRODUCT_CODE,
                    ),
                    product_code: PRODUCT_CODE.to_owned(),
                    customer_id: purchase.customer_identifier.clone(),
                    customer_account_id: Some(purchase.buyer_account_id.clone()),
                    license_arn: Some(purchase.license_arn.clone()),
                },
                now,
            );
            s.tenant_id = Some(tenant.id);
            s.product_id = Some(ProductId::new("analytics"));
            s.plan_id = Some(PlanId::new("pro"));
            s.status = SubscriptionStatus::Active;
            s
        })
        .collect();
    let store = Store::connect(database, &StoreOptions::default()).await?;
    store.migrate().await?;
    store.insert_tenants_bulk(&tenants).await?;
    store.insert_subscriptions_bulk(&rows).await?;
    store.close().await;
    Ok(World {
        ids: rows.iter().map(|s| s.id.to_string()).collect(),
        by_customer: purchases
            .iter()
            .enumerate()
            .map(|(i, p)| (p.customer_identifier.clone(), i))
            .collect(),
    })
}
