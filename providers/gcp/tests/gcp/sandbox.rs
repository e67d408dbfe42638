//! The provider against marketlink's Google sandbox (crates/sandbox, `gcp`): a purchase from
//! sign-up to cancellation over Google's own paths, messages pulled from its Pub/Sub.

use std::sync::Arc;

use marketlink_core::{
    ChangeAnswer, ChangeProgress, Clock, DiagnosisStatus, EmptyDirectory, EventKind, ExternalRef,
    LandingToken, Lifecycle, ManualClock, MarketplaceEvent, MarketplaceProvider, ProviderError,
    Quantity, UsageOutcome, UsageRecord,
};
use marketlink_gcp::{GcpConfig, GcpProvider};
use marketlink_sandbox::gcp::{CancellationPolicy, GcpSandbox, GcpSandboxConfig, PurchaseRequest};
use time::{Duration, macros::datetime};

pub(super) struct World {
    pub(super) sandbox: GcpSandbox,
    pub(super) provider: GcpProvider,
    pub(super) clock: ManualClock,
    _dir: tempfile::TempDir,
}

pub(super) async fn start() -> World {
    start_with(|_| {}).await
}

/// A world whose provider configuration `adjust` changes (after it is pointed at the sandbox).
pub(super) async fn start_with(adjust: impl FnOnce(&mut GcpConfig)) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clock = ManualClock::new(datetime!(2026-03-02 10:20 UTC));
    let config = GcpSandboxConfig {
        public_base_url: base.clone(),
        ..GcpSandboxConfig::default()
    };
    let sandbox = GcpSandbox::new(config, Arc::new(clock.clone())).unwrap();
    let app = sandbox.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vendor.json");
    std::fs::write(&key_file, sandbox.service_account_key_json().unwrap()).unwrap();
    let config = GcpConfig {
        provider_id: sandbox.config().provider_id.clone(),
        service_name: sandbox.config().product_domain.clone(),
        signup_keys_url: format!(
            "{base}/robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com"
        ),
        oidc_keys_url: format!("{base}/oauth2/v3/certs"),
        procurement_url: base.clone(),
        pubsub_url: base.clone(),
        service_control_url: base,
        credentials_file: Some(key_file),
        subscription: Some(sandbox.config().subscription_name()),
        ..GcpConfig::default()
    };
    let mut config = config;
    adjust(&mut config);
    let provider = GcpProvider::new(config, Arc::new(clock.clone())).unwrap();
    World {
        sandbox,
        provider,
        clock,
        _dir: dir,
    }
}

/// Pulls everything waiting, authenticates, interprets and acks it, as the queue poller and
/// the inbox worker do.
pub(super) async fn drain(w: &World) -> Vec<MarketplaceEvent> {
    let mut events = Vec::new();
    for pulled in w.provider.pull(10).await.unwrap() {
        let message = w.provider.authenticate(&pulled.message).await.unwrap();
        events.extend(
            w.provider
                .interpret(&message, &EmptyDirectory)
                .await
                .unwrap(),
        );
        w.provider.ack(&pulled.receipt).await.unwrap();
    }
    events
}

fn lifecycles(events: &[MarketplaceEvent]) -> Vec<Lifecycle> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Lifecycle { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_purchase_from_sign_up_to_cancellation() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let created = drain(&w).await;
    let token = LandingToken {
        token: purchase.sign_up_token.clone(),
    };
    let resolved = w.provider.resolve(&token).await.unwrap();
    assert_eq!(resolved.subscription.external_id, purchase.entitlement_id);
    assert!(
        created
            .iter()
            .all(|e| e.subscription == resolved.subscription),
        "{created:?}"
    );
    let subscription = resolved.subscription;
    w.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    w.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    assert!(
        w.sandbox
            .account(&purchase.account_id)
            .unwrap()
            .approvals
            .iter()
            .any(|a| a.name == "signup")
    );
    w.clock.advance(Duration::minutes(1));
    assert!(lifecycles(&drain(&w).await).contains(&Lifecycle::Activate));

    w.sandbox
        .request_plan_change(&purchase.entitlement_id, "pro")
        .unwrap();
    let asked = drain(&w).await;
    assert!(asked.iter().any(|e| matches!(&e.kind, EventKind::ChangeRequested { operation_id, .. } if operation_id == "pro")), "{asked:?}");
    let answer = w
        .provider
        .respond_to_change(&subscription, "pro", true, None)
        .await
        .unwrap();
    assert_eq!(answer, ChangeAnswer::Taken);
    assert!(matches!(
        w.provider
            .follow_change(&subscription, "pro")
            .await
            .unwrap(),
        ChangeProgress::Ended {
            succeeded: true,
            ..
        }
    ));

    w.sandbox
        .cancel(&purchase.entitlement_id, CancellationPolicy::EndOfTerm)
        .unwrap();
    let pending = drain(&w).await;
    assert!(
        !lifecycles(&pending).contains(&Lifecycle::Cancel),
        "usable until the term ends: {pending:?}"
    );
    w.sandbox.end_term(&purchase.entitlement_id).unwrap();
    w.clock.advance(Duration::minutes(1));
    assert!(lifecycles(&drain(&w).await).contains(&Lifecycle::Cancel));
}

pub(super) fn record(subscription: &ExternalRef, metric: &str, units: u32) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        subscription: subscription.clone(),
        plan_id: None,
        dimension: metric.into(),
        // The hour before the clock's: within Google's hour to report.
        hour: datetime!(2026-03-02 09:00 UTC),
        quantity: Quantity::from_units(units),
        allocations: Vec::new(),
    }
}

#[tokio::test]
async fn usage_reaches_the_sandbox_ledger_once() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let token = LandingToken {
        token: purchase.sign_up_token.clone(),
    };
    let subscription = w.provider.resolve(&token).await.unwrap().subscription;
    w.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    w.clock.advance(Duration::minutes(1));
    let records = [
        record(&subscription, "requests", 150),
        record(&subscription, "no-such-metric", 1),
    ];
    let outcomes = w.provider.report_usage(&records).await.unwrap();
    assert!(outcomes[0].is_delivered(), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], UsageOutcome::Rejected { .. }),
        "{outcomes:?}"
    );
    let resent = w.provider.report_usage(&records[..1]).await.unwrap();
    assert!(resent[0].is_delivered(), "{resent:?}");
    let ledger = w.sandbox.usage_ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].value, 150);
    assert_eq!(ledger[0].entitlement_id, purchase.entitlement_id);
    assert!(w.clock.now() < w.provider.rules().usage.deadline(records[0].hour));
}

#[tokio::test]
async fn forged_sign_ups_are_refused_and_doctor_is_green() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let claims = w.sandbox.sign_up_claims(&purchase.account_id);
    let forged = w.sandbox.sign_up_token_with_claims(&claims, true).unwrap();
    let refused = w.provider.resolve(&LandingToken { token: forged }).await;
    assert!(
        matches!(refused, Err(ProviderError::InvalidToken(_))),
        "{refused:?}"
    );
    let findings = w.provider.diagnose().await;
    for check in ["gcp.credentials", "gcp.procurement", "gcp.signup_keys"] {
        let finding = findings.iter().find(|f| f.check == check).unwrap();
        assert_eq!(finding.status, DiagnosisStatus::Ok, "{finding:?}");
    }
    // gcp.pubsub reads the subscription (Pub/Sub subscriptions.get), which the sandbox does
    // not serve yet.
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_keep_one_key_per_event() {
    let w = start().await;
    w.sandbox
        .set_pubsub_chaos(marketlink_sandbox::gcp::PubSubChaos {
            duplicate: true,
            reorder: true,
            ..Default::default()
        });
    w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let mut keys = Vec::new();
    for pulled in w.provider.pull(10).await.unwrap() {
        keys.push(
            w.provider
                .authenticate(&pulled.message)
                .await
                .unwrap()
                .dedup_key,
        );
        w.provider.ack(&pulled.receipt).await.unwrap();
    }
    let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
    assert!(
        keys.len() > distinct.len(),
        "every message came twice: {keys:?}"
    );
}
