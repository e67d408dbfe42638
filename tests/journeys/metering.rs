//! Metering end to end: usage through the HTTP API to the AWS sandbox's own ledger, and a
//! crash between the marketplace call and the bookkeeping that still bills every hour once.

use std::sync::Arc;

use marketlink_cli::{
    config::{Config, demo_base},
    run,
};
use marketlink_core::{
    Clock, ExternalRef, Lifecycle, Marketplace, MarketplaceProvider, ProductId, ProviderError,
    Subscription, SubscriptionStatus, SystemClock, UsageOutcome, UsageRecord,
};
use marketlink_e2e::{Stack, eventually, start};
use marketlink_engine::{Engine, Providers, metering::hour_floor};
use marketlink_sandbox::aws::{OfferKind, Purchase, SubscriptionAction};
use marketlink_store::{Store, StoreOptions, UsageHourState};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

const CLASSIC: &str = "mlsandboxclassic0000000001";
const BUYER: &str = "444455556666";
pub(crate) const KEY: &str = "demo-usage-key-0123";

pub(crate) fn external(purchase: &Purchase) -> ExternalRef {
    ExternalRef {
        marketplace: Marketplace::AWS,
        external_id: ExternalRef::aws_classic_id(&purchase.customer_identifier, CLASSIC),
        product_code: CLASSIC.into(),
        customer_id: purchase.customer_identifier.clone(),
        customer_account_id: Some(BUYER.into()),
        license_arn: None,
    }
}

/// A subscribed AWS buyer and its active subscription in `store`.
pub(crate) async fn subscribed(stack: &Stack, store: &Store) -> (Purchase, Subscription) {
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let mut sub = Subscription::pending(external(&purchase), SystemClock.now());
    sub.product_id = Some(ProductId::new("analytics"));
    let sub = store.upsert_subscription(&sub).await.unwrap();
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    store
        .apply_lifecycle(sub.id, Lifecycle::Activate, SystemClock.now())
        .await
        .unwrap();
    let sub = store.get_subscription(sub.id).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    (purchase, sub)
}

pub(crate) fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

pub(crate) async fn post(stack: &Stack, key: Option<&str>, body: String) -> (StatusCode, Value) {
    marketlink_sandbox::fuzz_seed("usage_api", body.as_bytes());
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/v1/usage", stack.app_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn usage_api_to_the_sandbox_ledger_once() {
    let stack = start(|_| {}).await;
    let (purchase, sub) = subscribed(&stack, &stack.store).await;
    let hour = hour_floor(SystemClock.now()) - Duration::hours(2);
    let event = |qty: Value, key: Option<&str>| {
        json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls",
               "quantity": qty, "timestamp": ts(hour + Duration::minutes(7)),
               "idempotency_key": key})
    };
    let batch = json!({"events": [event(json!(2), Some("a")), event(json!(3), Some("b")),
                                   event(json!(3), Some("b"))]})
    .to_string();

    assert_eq!(
        post(&stack, None, batch.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&stack, Some("wrong-key-0123456789"), batch.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = post(&stack, Some(KEY), "{\"events\": [".into()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    let (status, body) = post(&stack, Some(KEY), event(json!(-1), None).to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_quantity"))
    );
    let mut unknown = event(json!(1), None);
    unknown["dimension"] = json!("bogus");
    let (status, body) = post(&stack, Some(KEY), unknown.to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_dimension"))
    );
    let mut future = event(json!(1), None);
    future["timestamp"] = json!(ts(SystemClock.now() + Duration::hours(1)));
    let (status, body) = post(&stack, Some(KEY), future.to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("timestamp_in_future"))
    );
    // AWS bills whole units only: 1.5 is refused when it arrives, with its whole batch,
    // rather than answered 202 and dead-lettered at the flush.
    let fractional = json!([event(json!(2), Some("x")), event(json!(1.5), None)]);
    let (status, body) = post(&stack, Some(KEY), fractional.to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("whole_units_only")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1.5") && message.contains("AWS Marketplace"),
        "{message}"
    );
    assert_eq!(stack.store.usage_event_count(sub.id).await.unwrap(), 0);

    let (status, body) = post(&stack, Some(KEY), batch.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    // Resent as a whole (a client retry): nothing new.
    let (_, body) = post(&stack, Some(KEY), batch).await;
    assert_eq!(body["accepted"].as_u64(), Some(0));

    // The server's flusher bills the closed hour: one record, the hourly total.
    eventually("the hour is billed", || async {
        stack
            .aws
            .metered_records()
            .iter()
            .any(|r| r.customer_identifier.as_deref() == Some(&purchase.customer_identifier))
    })
    .await;
    eventually("the hour is settled", || async {
        stack
            .store
            .usage_hours_of(sub.id)
            .await
            .unwrap()
            .iter()
            .all(|h| h.state == UsageHourState::Delivered)
    })
    .await;
    let ledger: Vec<_> = stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| r.customer_identifier.as_deref() == Some(&purchase.customer_identifier))
        .collect();
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].hour, ledger[0].quantity.as_str()), (hour, "5"));
    // Usage for an hour already billed is refused: it could not be added any more.
    let (status, body) = post(&stack, Some(KEY), event(json!(1), Some("c")).to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

/// Performs the real marketplace call, then never returns: the process "dies" between the
/// call and the bookkeeping.
pub(crate) struct DiesAfterCall(pub(crate) Arc<dyn MarketplaceProvider>);

#[async_trait::async_trait]
impl MarketplaceProvider for DiesAfterCall {
    fn marketplace(&self) -> Marketplace {
        self.0.marketplace()
    }
    fn capabilities(&self) -> marketlink_core::Capabilities {
        self.0.capabilities()
    }
    async fn resolve(
        &self,
        t: &marketlink_core::LandingToken,
    ) -> Result<marketlink_core::ResolvedPurchase, ProviderError> {
        self.0.resolve(t).await
    }
    async fn activate(
        &self,
        s: &ExternalRef,
        p: Option<&marketlink_core::PlanId>,
        q: Option<u32>,
    ) -> Result<(), ProviderError> {
        self.0.activate(s, p, q).await
    }
    async fn change_plan(
        &self,
        s: &ExternalRef,
        p: &marketlink_core::PlanId,
    ) -> Result<marketlink_core::ChangeOutcome, ProviderError> {
        self.0.change_plan(s, p).await
    }
    async fn change_quantity(
        &self,
        s: &ExternalRef,
        q: u32,
    ) -> Result<marketlink_core::ChangeOutcome, ProviderError> {
        self.0.change_quantity(s, q).await
    }
    async fn cancel(
        &self,
        s: &ExternalRef,
    ) -> Result<marketlink_core::ChangeOutcome, ProviderError> {
        self.0.cancel(s).await
    }
    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        let _ = self.0.report_usage(records).await;
        std::future::pending().await
    }
    async fn entitlements(
        &self,
        s: &ExternalRef,
    ) -> Result<Vec<marketlink_core::Entitlement>, ProviderError> {
        self.0.entitlements(s).await
    }
    async fn authenticate(
        &self,
        m: &marketlink_core::InboundMessage,
    ) -> Result<marketlink_core::AuthenticatedMessage, ProviderError> {
        self.0.authenticate(m).await
    }
    async fn interpret(
        &self,
        m: &marketlink_core::AuthenticatedMessage,
        directory: &dyn marketlink_core::SubscriptionDirectory,
    ) -> Result<Vec<marketlink_core::MarketplaceEvent>, ProviderError> {
        self.0.interpret(m, directory).await
    }
}

#[tokio::test]
async fn crash_between_call_and_bookkeeping_bills_every_hour_once() {
    let stack = start(|_| {}).await;
    // marketlink's own database for this test (the stack's server has another).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &format!("sqlite:{}", dir.path().join("crash.db").display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let (purchase, sub) = subscribed(&stack, &store).await;
    let addr = stack.aws_url.trim_start_matches("http://").parse().unwrap();
    let mut config = Config::load_over(Some(&demo_base(addr)), None).unwrap();
    config.azure = None;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let providers = run::providers(&config, clock.clone()).await.unwrap();
    let aws = providers.get(&Marketplace::AWS).unwrap().clone();
    let engine = |provider: Arc<dyn MarketplaceProvider>| {
        let mut settings = config.metering.settings();
        settings.lease = Duration::seconds(1);
        Engine::new(
            store.clone(),
            Providers::new().with(provider),
            clock.clone(),
            Arc::new(config.catalog.clone()),
            config.changes.clone(),
        )
        .with_metering(settings)
    };
    let now = SystemClock.now();
    let hours: Vec<OffsetDateTime> = (2..5)
        .map(|i| hour_floor(now) - Duration::hours(i))
        .collect();
    let doomed = engine(Arc::new(DiesAfterCall(aws.clone())));
    let inputs: Vec<_> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| marketlink_engine::metering::UsageInput {
            subscription_id: Some(sub.id),
            tenant_id: None,
            product: None,
            dimension: "api_calls".into(),
            quantity: marketlink_core::Quantity::from_units(10 + i as u32),
            timestamp: *h + Duration::minutes(30),
            idempotency_key: None,
            allocations: vec![],
        })
        .collect();
    doomed.ingest_usage(&inputs, None).await.unwrap();
    let ledger = || {
        stack
            .aws
            .metered_records()
            .into_iter()
            .filter(|r| r.customer_identifier.as_deref() == Some(&purchase.customer_identifier))
            .collect::<Vec<_>>()
    };
    let crashed = tokio::spawn(async move { doomed.flush_usage().await });
    eventually("the marketplace has the records", || async {
        ledger().len() == 3
    })
    .await;
    crashed.abort();
    let _ = crashed.await;
    // No bookkeeping happened: every hour is still in flight.
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    assert!(
        rows.iter().all(|h| h.state == UsageHourState::Sending),
        "{rows:?}"
    );

    // A fresh process: once the lease has expired it resends the identical records, AWS
    // answers Success for identical records, and every hour is delivered.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let run = engine(aws).flush_usage().await.unwrap();
    assert_eq!((run.claimed, run.delivered), (3, 3), "{run:?}");
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    assert!(
        rows.iter()
            .all(|h| h.state == UsageHourState::Delivered && h.attempts == 2),
        "{rows:?}"
    );
    let ledger = ledger();
    assert_eq!(ledger.len(), 3, "billed exactly once per hour: {ledger:?}");
    for (i, h) in hours.iter().enumerate() {
        let billed: Vec<_> = ledger.iter().filter(|r| r.hour == *h).collect();
        assert_eq!(billed.len(), 1);
        assert_eq!(billed[0].quantity, (10 + i).to_string());
    }
    store.close().await;
}

/// Scoped vendor API keys report usage too: `usage:write` is required, and a tenant-scoped key
/// reports only for its own tenant.
#[tokio::test]
async fn scoped_api_keys_report_usage() {
    use marketlink_core::{Scope, Tenant, TenantId};

    let stack = start(|_| {}).await;
    let store = &stack.store;
    let (_, sub) = subscribed(&stack, store).await;
    let tenant = Tenant::new("Scoped", None, "scoped@example.com", SystemClock.now()).unwrap();
    store.create_tenant(&tenant).await.unwrap();
    store
        .bind_subscription(sub.id, tenant.id, SystemClock.now())
        .await
        .unwrap();
    let make = |scopes: Vec<Scope>, tenant: Option<TenantId>| {
        let (key, plaintext, hash) =
            marketlink_web::api_auth::new_key("t", scopes, tenant, SystemClock.now());
        async move {
            store.create_api_key(&key, &hash).await.unwrap();
            plaintext
        }
    };
    let writer = make(vec![Scope::UsageWrite], None).await;
    let reader = make(vec![Scope::EntitlementsRead], None).await;
    let own = make(vec![Scope::UsageWrite], Some(tenant.id)).await;
    let other = Tenant::new("Other", None, "other@example.com", SystemClock.now()).unwrap();
    store.create_tenant(&other).await.unwrap();
    let stranger = make(vec![Scope::UsageWrite], Some(other.id)).await;
    let event = |key: &str| {
        serde_json::json!({
            "subscription_id": sub.id,
            "dimension": "api_calls",
            "quantity": 1,
            "timestamp": ts(SystemClock.now()),
            "idempotency_key": key,
        })
        .to_string()
    };
    assert_eq!(
        post(&stack, Some(&writer), event("w")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&stack, Some(&own), event("o")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&stack, Some(&reader), event("r")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&stack, Some(&stranger), event("s")).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Two marketlink replicas on one PostgreSQL database flush at the same time into the AWS
/// sandbox: every hour reaches the marketplace's ledger, and no record is ever sent twice
/// (the sandbox's call log counts what was sent, before its de-duplication).
#[tokio::test]
async fn two_flushers_on_postgres_send_every_record_once() {
    if marketlink_e2e::postgres_skipped() {
        return;
    }
    let stack = start(|_| {}).await;
    let url = marketlink_e2e::fresh_postgres_database().await;
    let replica = || async {
        Store::connect(&url, &StoreOptions::default())
            .await
            .unwrap()
    };
    let store = replica().await;
    store.migrate().await.unwrap();

    let addr = stack.aws_url.trim_start_matches("http://").parse().unwrap();
    let mut config = Config::load_over(Some(&demo_base(addr)), None).unwrap();
    config.azure = None;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = |store: Store, providers: Providers| {
        let mut settings = config.metering.settings();
        settings.claim_limit = 10;
        settings.concurrency = 2;
        Engine::new(
            store,
            providers,
            clock.clone(),
            Arc::new(config.catalog.clone()),
            config.changes.clone(),
        )
        .with_metering(settings)
    };
    let a = engine(
        store.clone(),
        run::providers(&config, clock.clone()).await.unwrap(),
    );
    let b = engine(
        replica().await,
        run::providers(&config, clock.clone()).await.unwrap(),
    );

    // 8 buyers with 12 closed hours each.
    let now = SystemClock.now();
    let mut customers = Vec::new();
    let mut inputs = Vec::new();
    for n in 0..8u32 {
        let account = format!("{:012}", 500_000_000_000u64 + u64::from(n));
        let purchase = stack
            .aws
            .purchase(CLASSIC, OfferKind::Subscription, &account)
            .unwrap();
        stack
            .aws
            .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
        let mut sub = Subscription::pending(
            ExternalRef {
                customer_account_id: Some(account),
                ..external(&purchase)
            },
            now,
        );
        sub.product_id = Some(ProductId::new("analytics"));
        let sub = store.upsert_subscription(&sub).await.unwrap();
        store
            .apply_lifecycle(sub.id, Lifecycle::Activate, now)
            .await
            .unwrap();
        for h in 2..14u32 {
            inputs.push(marketlink_engine::metering::UsageInput {
                subscription_id: Some(sub.id),
                tenant_id: None,
                product: None,
                dimension: "api_calls".into(),
                quantity: marketlink_core::Quantity::from_units(n * 100 + h),
                timestamp: hour_floor(now) - Duration::hours(i64::from(h)) + Duration::minutes(30),
                idempotency_key: None,
                allocations: vec![],
            });
        }
        customers.push(purchase.customer_identifier);
    }
    a.ingest_usage(&inputs, None).await.unwrap();

    let (ra, rb) = tokio::join!(a.flush_usage(), b.flush_usage());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 96, "{ra:?} {rb:?}");
    assert!(
        ra.claimed > 0 && rb.claimed > 0,
        "both replicas worked: {ra:?} {rb:?}"
    );
    assert_eq!((ra.lost_leases, rb.lost_leases), (0, 0));

    // What the marketplace was sent, call by call ("<product>: N records, ...").
    let sent: usize = stack
        .aws
        .call_log()
        .iter()
        .filter(|c| c.operation == "BatchMeterUsage")
        .map(|c| {
            let (_, rest) = c.summary.split_once(": ").unwrap();
            rest.split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(sent, 96, "a record was sent more than once");
    let ledger: Vec<_> = stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| {
            r.customer_identifier
                .as_ref()
                .is_some_and(|c| customers.contains(c))
        })
        .collect();
    assert_eq!(ledger.len(), 96);
    for input in &inputs {
        let hour = hour_floor(input.timestamp);
        assert_eq!(
            ledger
                .iter()
                .filter(|r| r.hour == hour && r.quantity == input.quantity.to_string())
                .count(),
            1,
            "{hour} {}",
            input.quantity
        );
    }
    let backlog = store.usage_backlog(now).await.unwrap();
    assert_eq!(backlog.by_state.get("delivered"), Some(&96));
    store.close().await;
    b.store.close().await;
    marketlink_e2e::drop_postgres_database(&url).await;
}
