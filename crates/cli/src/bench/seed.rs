//! Seeding shared by the benchmarks that need subscribed AWS buyers: the buyers subscribed in
//! the sandbox without notifications (`AwsSandbox::seed_subscribed`) and the same
//! subscriptions active in the store, one tenant each, written with the store's bulk inserts.
//! Sending each buyer's SNS notification instead costs an RSA signature per buyer: 80 s of
//! seeding for a 400k-row flush benchmark.

use marketlink_core::{
    ExternalRef, Marketplace, PlanId, ProductId, Subscription, SubscriptionStatus,
};
use marketlink_sandbox::aws::{AwsSandbox, Purchase};
use marketlink_store::Store;
use time::OffsetDateTime;

/// The demo catalog's product listed as this AWS product code (the sandbox's classic,
/// CustomerIdentifier listing); its "pro" plan meters `api_calls`.
pub(super) const PRODUCT_CODE: &str = "mlsandboxclassic0000000001";

/// The buyers as the sandbox and the store know them, in the same order.
pub(super) struct Seeded {
    pub purchases: Vec<Purchase>,
    pub subscriptions: Vec<Subscription>,
}

/// `count` buyers with 12-digit accounts from `first_account`, subscribed to [`PRODUCT_CODE`]
/// in the sandbox and active on `plan` in the store (already migrated).
pub(super) async fn aws_subscribed(
    aws: &AwsSandbox,
    store: &Store,
    first_account: u64,
    count: usize,
    plan: Option<&str>,
    now: OffsetDateTime,
) -> anyhow::Result<Seeded> {
    let purchases = aws.seed_subscribed(PRODUCT_CODE, first_account, count)?;
    let tenants = super::tenants(count, now)?;
    let subscriptions: Vec<Subscription> = purchases
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
            s.plan_id = plan.map(PlanId::new);
            s.status = SubscriptionStatus::Active;
            s
        })
        .collect();
    store.insert_tenants_bulk(&tenants).await?;
    store.insert_subscriptions_bulk(&subscriptions).await?;
    Ok(Seeded {
        purchases,
        subscriptions,
    })
}
