//! A replica over many subscriptions serves at once (issue 22, ADR 0022): after a restart,
//! entitlement checks over HTTP are answered correctly while the index loads (from the
//! database), including for a subscription another replica changes during the load, and
//! from memory once `/readyz` says the index is warm. On SQLite and PostgreSQL.

use marketlink_core::{
    Clock, ExternalRef, Lifecycle, Marketplace, PlanId, ProductId, Scope, Subscription,
    SubscriptionId, SubscriptionStatus, SystemClock, Tenant, TenantId,
};
use std::time::Duration;

use marketlink_e2e::{Stack, fresh_postgres_database, start, start_on_database};
use serde_json::Value;

/// Enough that loading them takes a while in a debug build.
const SUBSCRIPTIONS: usize = 30_000;

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

async fn check(http: &reqwest::Client, stack: &Stack, key: &str, tenant: TenantId) -> String {
    let url = format!(
        "{}/api/v1/check?tenant={tenant}&product=analytics&feature=dashboards",
        stack.app_url
    );
    let response = http.get(url).bearer_auth(key).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let answer: Value = response.json().await.unwrap();
    answer["reason"].as_str().unwrap().to_owned()
}

/// The index state `/readyz` reports; it answers 200 throughout.
async fn index_state(http: &reqwest::Client, stack: &Stack) -> String {
    let response = http
        .get(format!("{}/readyz", stack.app_url))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body: Value = response.json().await.unwrap();
    body["entitlements"].as_str().unwrap().to_owned()
}

async fn checks_are_correct_while_the_index_loads(stack: &mut Stack) {
    let http = reqwest::Client::new();
    let subs = seed(stack).await;
    let key = key(stack).await;
    let (changed, changed_sub) = subs[SUBSCRIPTIONS / 2];
    // A new process: nothing in memory, the index loads in the background.
    stack.restart().await;
    // Another replica suspends a subscription while this one loads.
    stack
        .store
        .apply_lifecycle(changed_sub, Lifecycle::Suspend, SystemClock.now())
        .await
        .unwrap();
    // The index never goes back to loading: the change was made during the load.
    assert_eq!(index_state(&http, stack).await, "loading");
    // Correct at every moment: from the database while loading, from memory once warm.
    let started = std::time::Instant::now();
    let mut checked = 0;
    for (tenant, _) in subs.iter().cycle().step_by(101) {
        assert_eq!(check(&http, stack, &key, changed).await, "suspended");
        if *tenant != changed {
            assert_eq!(check(&http, stack, &key, *tenant).await, "allowed");
        }
        checked += 1;
        if index_state(&http, stack).await == "warm" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never warm");
    }
    // PostgreSQL loads 30k rows in well under a second, so there may have been only one
    // round before warm; the engine's tests cover longer loads.
    eprintln!("{checked} rounds of checks until warm");
    for (tenant, _) in subs.iter().step_by(997) {
        let expected = if *tenant == changed {
            "suspended"
        } else {
            "allowed"
        };
        assert_eq!(check(&http, stack, &key, *tenant).await, expected);
    }
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
