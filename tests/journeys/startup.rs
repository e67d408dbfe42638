//! A replica over many subscriptions serves at once (issue 22, ADR 0022): after a restart,
//! entitlement checks over HTTP are answered correctly while the index loads (from the
//! database), including for a subscription another replica changes during the load, and
//! from memory once `/readyz` says the index is warm. On SQLite and PostgreSQL.

use marketlink_core::{
    Clock, ExternalRef, Lifecycle, Marketplace, PlanId, ProductId, Scope, Subscription,
    SubscriptionId, SubscriptionStatus, SystemClock, Tenant, TenantId,
};
use marketlink_e2e::{Stack, eventually, fresh_postgres_database, start, start_on_database};
use serde_json::Value;

/// Enough that loading them takes a while in a debug build.
const SUBSCRIPTIONS: usize = 40_000;

/// Active "analytics" subscriptions on the basic plan (which has `dashboards`), one per tenant.
async fn seed(stack: &Stack) -> Vec<(TenantId, SubscriptionId)> {
    let now = SystemClock.now();
    let tenants: Vec<Tenant> = (0..SUBSCRIPTIONS)
        .map(|i| Tenant::new(&format!("T{i}"), None, &format!("t{i}@x.example"), now).unwrap())
        .collect();
    let subscriptions: Vec<Subscription> = tenants
        .iter()
        .enumerate()
        .map(|(i, tenant)| {
            let mut s = Subscription::pending(
                ExternalRef {
                    marketplace: Marketplace::AWS,
                    external_id: format!("cust-{i}/startup"),
                    product_code: "mlsandboxclassic0000000001".into(),
                    customer_id: format!("cust-{i}"),
                    customer_account_id: None,
                    license_arn: None,
                },
                now,
            );
            s.tenant_id = Some(tenant.id);
            s.product_id = Some(ProductId::new("analytics"));
            s.plan_id = Some(PlanId::new("basic"));
            s.status = SubscriptionStatus::Active;
            s
        })
        .collect();
    stack.store.insert_tenants_bulk(&tenants).await.unwrap();
    stack
        .store
        .insert_subscriptions_bulk(&subscriptions)
        .await
        .unwrap();
    tenants
        .iter()
        .zip(&subscriptions)
        .map(|(t, s)| (t.id, s.id))
        .collect()
}

async fn key(stack: &Stack) -> String {
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key(
        "startup journey",
        vec![Scope::EntitlementsRead],
        None,
        SystemClock.now(),
    );
    stack.store.create_api_key(&key, &hash).await.unwrap();
    plaintext
}

async fn reason(stack: &Stack, key: &str, tenant: TenantId) -> String {
    let url = format!(
        "{}/api/v1/check?tenant={tenant}&product=analytics&feature=dashboards",
        stack.app_url
    );
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let answer: Value = response.json().await.unwrap();
    answer["reason"].as_str().unwrap().to_owned()
}

/// The index state `/readyz` reports; it answers 200 throughout.
async fn index_state(stack: &Stack) -> String {
    let response = reqwest::get(format!("{}/readyz", stack.app_url))
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body: Value = response.json().await.unwrap();
    body["entitlements"].as_str().unwrap().to_owned()
}

async fn checks_are_correct_while_the_index_loads(stack: &mut Stack) {
    let subs = seed(stack).await;
    let key = key(stack).await;
    // A new process: nothing in memory, the index loads in the background.
    stack.restart().await;
    let (changed, changed_sub) = subs[SUBSCRIPTIONS / 2];
    assert_eq!(reason(stack, &key, changed).await, "allowed");
    // Another replica suspends it while this one loads.
    let now = SystemClock.now();
    stack
        .store
        .apply_lifecycle(changed_sub, Lifecycle::Suspend, now)
        .await
        .unwrap();
    let mut while_loading = 0;
    for (tenant, _) in subs.iter().step_by(211) {
        assert_eq!(reason(stack, &key, changed).await, "suspended");
        if *tenant != changed {
            assert_eq!(reason(stack, &key, *tenant).await, "allowed");
        }
        // The index never goes back to loading: still loading now means the answers
        // above came from the database.
        if index_state(stack).await == "loading" {
            while_loading += 1;
        }
    }
    assert!(while_loading > 0, "the index was warm before any check");
    eventually("the index is warm", || async {
        index_state(stack).await == "warm"
    })
    .await;
    // From memory now: the change made during the load is there.
    assert_eq!(reason(stack, &key, changed).await, "suspended");
    assert_eq!(reason(stack, &key, subs[0].0).await, "allowed");
}

#[tokio::test]
async fn checks_are_correct_while_the_index_loads_on_sqlite() {
    checks_are_correct_while_the_index_loads(&mut start(|_| {}).await).await;
}

#[tokio::test]
async fn checks_are_correct_while_the_index_loads_on_postgres() {
    if marketlink_e2e::postgres_skipped() {
        return;
    }
    let database = fresh_postgres_database().await;
    let mut stack = start_on_database(&database, |_| {}, |_| {}).await;
    checks_are_correct_while_the_index_loads(&mut stack).await;
    drop(stack);
    marketlink_e2e::drop_postgres_database(&database).await;
}
