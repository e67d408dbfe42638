//! Reconciliation against the sandboxes: with nothing changed it reports nothing; a lost
//! Microsoft webhook is noticed and repaired (a dry run changes nothing); entitlements we hold
//! differently from AWS are reported and repaired; AWS notifications lost altogether are
//! repaired from the Agreement API.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, routing::post};
use marketlink_cli::run;
use marketlink_core::{
    Clock, Entitlement, EntitlementValue, Marketplace, Subscription, SubscriptionStatus,
    SystemClock,
};
use marketlink_e2e::{
    Stack, azure_land_and_sign_in, browser, browser_trusting, csrf, eventually, start, start_full,
    start_sns_over_sqs_only,
};
use marketlink_engine::{
    reconcile::{Action, Drift},
    webhooks::WebhookSettings,
};
use marketlink_sandbox::aws::{OfferKind, Purchase, SubscriptionAction};
use marketlink_sandbox::azure::{MarketplaceAction, PurchaseRequest};
use reqwest::Client;
use serde_json::Value;

const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CLASSIC: &str = "mlsandboxclassic0000000001";
const CONCURRENT: &str = "mlsandboxconcurrent0000002";
const BUYER: &str = "444455556666";

async fn subscription(stack: &Stack, id: &str) -> Option<Subscription> {
    stack
        .store
        .find_subscription(&Marketplace::AZURE, id)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_webhook_is_repaired_by_reconcile() {
    // Every webhook is refused (wrong audience) and the sandbox gives up after one attempt:
    // the notification is lost, as when an endpoint was down for longer than Microsoft retries.
    let stack = start_full(
        |_| {},
        |azure| azure.webhook_max_attempts = 1,
        |config| {
            if let Some(azure) = config.azure.as_mut() {
                azure.webhook_audience = Some("not-our-app".into());
            }
        },
    )
    .await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "pro".into(),
            quantity: Some(5),
            buyer_object_id: ALICE.into(),
            subscription_name: None,
            is_test: false,
        })
        .await
        .unwrap();
    let id = purchase.subscription_id.to_string();
    azure_land_and_sign_in(&client, &purchase.landing_url, ALICE).await;
    let html = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .post(format!("{}/signup", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("name", "Alice Buyer"),
            ("email", "alice@fabrikam.example"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    eventually("activated", || async {
        subscription(&stack, &id)
            .await
            .is_some_and(|s| s.status == SubscriptionStatus::Active)
    })
    .await;
    // In step: nothing to report.
    let calm = run::reconcile_once(&stack.config, true).await.unwrap();
    assert_eq!(calm.surveyed, 1);
    assert!(calm.items.is_empty(), "{:#?}", calm.items);

    stack
        .azure
        .marketplace_action(purchase.subscription_id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    eventually("the webhook is refused and given up", || async {
        stack
            .azure
            .webhook_attempts()
            .await
            .iter()
            .any(|a| a.action == "Suspend" && a.status == Some(401))
    })
    .await;
    assert_eq!(
        subscription(&stack, &id).await.unwrap().status,
        SubscriptionStatus::Active,
        "the lost webhook left us behind"
    );

    // A dry run reports the drift and changes nothing.
    let dry = run::reconcile_once(&stack.config, true).await.unwrap();
    let item = dry
        .items
        .iter()
        .find(|i| i.external_id == id)
        .expect("drift reported");
    assert_eq!(
        item.drift,
        Drift::StatusMismatch {
            ours: SubscriptionStatus::Active,
            theirs: SubscriptionStatus::Suspended
        }
    );
    assert!(matches!(item.action, Action::WouldRepair(_)));
    let sub = subscription(&stack, &id).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);

    // The real run applies the marketplace's state through the event path.
    let report = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(
        report
            .items
            .iter()
            .any(|i| i.external_id == id && matches!(i.action, Action::Repaired(_))),
        "{:#?}",
        report.items
    );
    assert_eq!(
        subscription(&stack, &id).await.unwrap().status,
        SubscriptionStatus::Suspended
    );
    let timeline = stack.store.timeline(sub.id, 100).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.source == "reconcile" && e.kind == "lifecycle:suspend"),
        "{timeline:?}"
    );
    // In step again: nothing left for this subscription.
    let again = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(
        again.items.iter().all(|i| i.external_id != id),
        "{:#?}",
        again.items
    );
}

/// Lands with `purchase`'s token, then signs up (first purchase) or links it to the account
/// `client` is signed in to, and waits for AWS's subscribe-success to activate it.
async fn aws_buy(stack: &Stack, client: &Client, purchase: &Purchase, first: bool) {
    aws_land(stack, client, purchase, first).await;
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    eventually("active", || async {
        crate::aws::subscription(stack, purchase)
            .await
            .is_some_and(|s| s.status == SubscriptionStatus::Active)
    })
    .await;
}

/// Lands with `purchase`'s token, then signs up (first purchase) or links it.
async fn aws_land(stack: &Stack, client: &Client, purchase: &Purchase, first: bool) {
    let mut form = vec![(
        "x-amzn-marketplace-token",
        purchase.registration_token.as_str(),
    )];
    if purchase.offer_kind == OfferKind::FreeTrial {
        form.push(("x-amzn-marketplace-offer-type", "free-trial"));
    }
    client
        .post(format!("{}/aws/landing", stack.app_url))
        .form(&form)
        .send()
        .await
        .unwrap();
    let html = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf(&html);
    let sent = if first {
        client
            .post(format!("{}/signup", stack.app_url))
            .form(&[
                ("csrf", token.as_str()),
                ("name", "Ada Lovelace"),
                (
                    "email",
                    &format!("{}@example.com", purchase.buyer_account_id),
                ),
                ("password", "correct-horse-battery"),
            ])
            .send()
            .await
    } else {
        client
            .post(format!("{}/signup/link", stack.app_url))
            .form(&[("csrf", token.as_str())])
            .send()
            .await
    };
    assert!(sent.unwrap().status().is_redirection());
}

#[tokio::test]
async fn aws_in_step_reports_no_drift_and_a_real_difference_is_repaired() {
    let stack = start(|_| {}).await;
    let client = browser();
    // A contract over SNS, a SaaS subscription and a contract over EventBridge, one buyer.
    let classic = stack
        .aws
        .purchase(CLASSIC, OfferKind::Contract, BUYER)
        .unwrap();
    aws_buy(&stack, &client, &classic, true).await;
    let saas = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Subscription, BUYER)
        .unwrap();
    aws_buy(&stack, &client, &saas, false).await;
    let contract = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Contract, BUYER)
        .unwrap();
    aws_buy(&stack, &client, &contract, false).await;
    let contract_sub = crate::aws::subscription(&stack, &contract).await.unwrap();
    eventually("contract seats read", || async {
        stack
            .store
            .entitlements(contract_sub.id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.dimension == "seats")
    })
    .await;

    // Nothing changed: nothing to report.
    let report = run::reconcile_once(&stack.config, true).await.unwrap();
    assert_eq!(report.surveyed, 3, "{report:#?}");
    assert!(report.items.is_empty(), "{:#?}", report.items);

    // Ours differs from AWS's (seats 7 against the contract's 10): reported, then repaired.
    let seats = |n| Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(n),
        expires_at: None,
    };
    stack
        .store
        .replace_entitlements(contract_sub.id, &[seats(7)], SystemClock.now())
        .await
        .unwrap();
    let report = run::reconcile_once(&stack.config, false).await.unwrap();
    let [item] = report.items.as_slice() else {
        panic!("one drift expected: {:#?}", report.items);
    };
    assert_eq!(item.external_id, contract.license_arn);
    let Drift::EntitlementsDiffer { differences, .. } = &item.drift else {
        panic!("entitlements drift expected: {item:?}");
    };
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].ours, Some(seats(7)));
    assert_eq!(
        differences[0].theirs.as_ref().map(|e| &e.value),
        Some(&EntitlementValue::Integer(10))
    );
    assert!(matches!(item.action, Action::Repaired(_)), "{item:?}");
    let repaired = stack.store.entitlements(contract_sub.id).await.unwrap();
    assert_eq!(repaired.len(), 1);
    assert_eq!(repaired[0].value, EntitlementValue::Integer(10));
    let again = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(again.items.is_empty(), "{:#?}", again.items);

    // A delivered cancellation moves the contract's expiry at AWS: we follow, nothing drifts.
    stack
        .aws
        .send_subscription_event(
            &classic.agreement_id,
            SubscriptionAction::UnsubscribePending,
        )
        .await
        .unwrap();
    let classic_sub = crate::aws::subscription(&stack, &classic).await.unwrap();
    eventually("cancellation under way", || async {
        let sub = stack.store.get_subscription(classic_sub.id).await.unwrap();
        sub.status == SubscriptionStatus::UnsubscribePending
    })
    .await;
    eventually("entitlements re-read", || async {
        let read = stack.store.entitlements(classic_sub.id).await.unwrap();
        read.iter().all(|e| e.expires_at <= Some(SystemClock.now()))
    })
    .await;
    let after_cancel = run::reconcile_once(&stack.config, true).await.unwrap();
    assert!(after_cancel.items.is_empty(), "{:#?}", after_cancel.items);
}

/// The vendor's product: keeps every provisioning webhook it is sent.
async fn hook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let hooks: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = hooks.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                if let Ok(payload) = serde_json::from_slice::<Value>(&body) {
                    kept.lock().unwrap().push(payload);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hooks)
}

/// One reconcile run; the status drift of each of `purchases`, which must have been repaired.
async fn repaired_statuses(
    stack: &Stack,
    purchases: &[&Purchase],
) -> Vec<(SubscriptionStatus, SubscriptionStatus)> {
    let report = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(report.status_unknown.is_empty(), "{report:#?}");
    purchases
        .iter()
        .map(|p| {
            let id = crate::aws::external_id(p);
            let item = report
                .items
                .iter()
                .find(|i| i.external_id == id && matches!(i.drift, Drift::StatusMismatch { .. }))
                .unwrap_or_else(|| panic!("status drift of {id}: {report:#?}"));
            assert!(matches!(item.action, Action::Repaired(_)), "{item:?}");
            match item.drift {
                Drift::StatusMismatch { ours, theirs } => (ours, theirs),
                _ => unreachable!(),
            }
        })
        .collect()
}

/// Every AWS notification is lost: SNS has no HTTPS subscription to us and no queue is polled,
/// as when an endpoint was down longer than SNS retries and the queue's messages expired.
/// Reconciliation reads the agreements (SearchAgreements, GetAgreementEntitlements) and
/// repairs the activation, the final metering window and the end, on an SNS product (classic
/// identity, by the buyer's account) and an EventBridge product (by LicenseArn), with the
/// timeline naming reconcile and the vendor's webhooks sent.
#[tokio::test]
async fn aws_lost_notifications_are_repaired_from_the_agreements() {
    let (hook_url, hooks) = hook_receiver().await;
    let stack = start_sns_over_sqs_only(move |config| {
        if let Some(aws) = config.aws.as_mut() {
            aws.sqs_queue_urls.clear();
        }
        config.webhooks = Some(WebhookSettings {
            url: hook_url,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        });
    })
    .await;
    let client = browser();
    let sns = stack
        .aws
        .purchase(CLASSIC, OfferKind::Contract, BUYER)
        .unwrap();
    let eventbridge = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Contract, BUYER)
        .unwrap();
    aws_land(&stack, &client, &sns, true).await;
    aws_land(&stack, &client, &eventbridge, false).await;
    let both = [&sns, &eventbridge];
    let send = async |action| {
        for p in both {
            stack
                .aws
                .send_subscription_event(&p.agreement_id, action)
                .await
                .unwrap();
        }
    };
    send(SubscriptionAction::SubscribeSuccess).await;
    for p in both {
        let sub = crate::aws::subscription(&stack, p).await.unwrap();
        assert_eq!(sub.status, SubscriptionStatus::Pending, "nobody heard AWS");
    }
    use SubscriptionStatus::*;
    assert_eq!(
        repaired_statuses(&stack, &both).await,
        [(Pending, Active), (Pending, Active)]
    );

    // The buyers cancel: the agreements end, the licences stay for the final metering hour.
    send(SubscriptionAction::UnsubscribePending).await;
    assert_eq!(
        repaired_statuses(&stack, &both).await,
        [(Active, UnsubscribePending), (Active, UnsubscribePending)]
    );
    // AWS revokes the licences: the end.
    send(SubscriptionAction::UnsubscribeSuccess).await;
    assert_eq!(
        repaired_statuses(&stack, &both).await,
        [
            (UnsubscribePending, Cancelled),
            (UnsubscribePending, Cancelled)
        ]
    );
    for p in both {
        let sub = crate::aws::subscription(&stack, p).await.unwrap();
        assert_eq!(sub.status, Cancelled);
        let timeline = stack.store.timeline(sub.id, 100).await.unwrap();
        assert!(
            timeline
                .iter()
                .any(|e| e.source == "reconcile" && e.kind == "lifecycle:cancel"),
            "{timeline:?}"
        );
        let id = sub.id.to_string();
        eventually("the vendor is told", || async {
            hooks
                .lock()
                .unwrap()
                .iter()
                .any(|h| h["type"] == "subscription.cancelled" && h.to_string().contains(&id))
        })
        .await;
    }
    // In step: nothing more to say about them.
    let again = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(again.items.is_empty(), "{:#?}", again.items);
}
