//! Changes Microsoft asks about converge on what Microsoft bills, against the sandbox with its
//! default 10 s window: a refusal Microsoft applied anyway is applied and reported; an answer
//! that comes after Microsoft's auto-accept applies the accepted change (no second webhook
//! comes); a Reinstate our policy declines ends the subscription on both sides; our own
//! in-progress change notified by a `Partner` webhook is not answered.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, routing::post};
use marketlink_core::{Marketplace, PlanId, SubscriptionStatus};
use marketlink_e2e::{Stack, browser_trusting, csrf, eventually, start_full};
use marketlink_engine::webhooks::WebhookSettings;
use marketlink_sandbox::azure::{InjectedError, MarketplaceAction};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::azure::{active_subscription, manage_page, wait_for};

/// The vendor's product: keeps every provisioning webhook it is sent.
type Hooks = Arc<Mutex<Vec<Value>>>;

async fn vendor_receiver() -> (String, Hooks) {
    let hooks: Hooks = Arc::default();
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

fn hook(hooks: &Hooks, event_type: &str, mark: &str) -> Option<Value> {
    hooks
        .lock()
        .unwrap()
        .iter()
        .find(|h| h["type"] == event_type && !h["data"][mark].is_null())
        .cloned()
}

async fn timeline(stack: &Stack, id: &str) -> Vec<(String, String)> {
    let sub = stack
        .store
        .find_subscription(&Marketplace::AZURE, id)
        .await
        .unwrap()
        .unwrap();
    stack
        .store
        .timeline(sub.id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.outcome))
        .collect()
}

/// PATCHes marketlink sent to one operation (the sandbox's call log).
async fn patches_to(stack: &Stack, operation: &str) -> usize {
    stack
        .azure
        .call_log()
        .await
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains(&format!("/operations/{operation}")))
        .count()
}

async fn downgrade(stack: &Stack, id: &str) -> uuid::Uuid {
    stack
        .azure
        .marketplace_action(
            id.parse().unwrap(),
            MarketplaceAction::ChangePlan("basic".into()),
        )
        .await
        .unwrap()
}

async fn stack_with(
    tune_azure: impl FnOnce(&mut marketlink_sandbox::azure::AzureSandboxConfig),
    tune_policy: impl FnOnce(&mut marketlink_engine::ChangePolicy),
) -> (Stack, Client, Hooks) {
    let (url, hooks) = vendor_receiver().await;
    let stack = start_full(
        |_| {},
        tune_azure,
        move |config| {
            tune_policy(&mut config.changes);
            config.webhooks = Some(WebhookSettings {
                url,
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            });
        },
    )
    .await;
    let client = browser_trusting(&stack.azure.ca_pem);
    (stack, client, hooks)
}

#[tokio::test]
async fn a_refused_change_microsoft_applied_anyway_is_reported() {
    let (stack, client, hooks) = stack_with(
        |azure| azure.apply_refused_changes = true,
        |policy| policy.refuse_downgrades = true,
    )
    .await;
    assert_eq!(stack.azure.config().change_ack_timeout_ms, 10_000);
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    let op = downgrade(&stack, &id).await;

    // We refused (PATCH Failure); Microsoft says Failed, and bills `basic` all the same.
    wait_for(&stack, &id, "the plan Microsoft bills", |s| {
        s.plan_id == Some(PlanId::new("basic"))
    })
    .await;
    assert_eq!(patches_to(&stack, &op.to_string()).await, 1);
    let op_now = stack.azure.operation(op).await.unwrap();
    assert_eq!(op_now["status"], "Failed");
    let history = timeline(&stack, &id).await;
    assert!(
        history
            .iter()
            .any(|(k, o)| k == "change_requested" && o.starts_with("refused: downgrades")),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|(k, o)| k == "change_refusal_checked"
                && o.starts_with("applied despite our refusal")),
        "{history:?}"
    );
    eventually("the vendor hears it, marked", || async {
        hook(
            &hooks,
            "subscription.plan_changed",
            "applied_despite_refusal",
        )
        .is_some()
    })
    .await;
    let told = hook(
        &hooks,
        "subscription.plan_changed",
        "applied_despite_refusal",
    )
    .unwrap();
    assert_eq!(told["data"]["applied_despite_refusal"], true);
    assert_eq!(told["data"]["subscription"]["plan_id"], "basic");
}

#[tokio::test]
async fn a_late_answer_after_auto_accept_applies_the_accepted_change() {
    // Microsoft's default 10 s; our policy would refuse this downgrade, if it were in time.
    let (stack, client, hooks) = stack_with(|_| {}, |policy| policy.refuse_downgrades = true).await;
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    // The worker is slow: confirming the webhook (Get Subscription) takes longer than the
    // window, so by the time we could answer, Microsoft has accepted on its own.
    stack
        .azure
        .inject_errors(&id, InjectedError::Slow(10_500), 1);
    let op = downgrade(&stack, &id).await;

    wait_for(&stack, &id, "the accepted plan", |s| {
        s.plan_id == Some(PlanId::new("basic"))
    })
    .await;
    assert_eq!(
        patches_to(&stack, &op.to_string()).await,
        0,
        "nothing sent late"
    );
    assert_eq!(
        stack.azure.operation(op).await.unwrap()["status"],
        "Succeeded"
    );
    let history = timeline(&stack, &id).await;
    assert!(
        history
            .iter()
            .any(|(k, o)| k == "change_requested" && o.starts_with("settled by the marketplace")),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|(k, o)| k == "change_settled_by_marketplace"
                && o.contains("auto-accepted")
                && o.contains("our policy would have refused")),
        "{history:?}"
    );
    eventually("the vendor hears it, marked", || async {
        hook(&hooks, "subscription.plan_changed", "auto_accepted").is_some()
    })
    .await;
    let told = hook(&hooks, "subscription.plan_changed", "auto_accepted").unwrap();
    assert!(
        told["data"]["policy_refusal"]
            .as_str()
            .unwrap()
            .contains("downgrades")
    );
    // Microsoft sends no second webhook after its auto-accept.
    let deliveries = stack
        .azure
        .webhook_attempts()
        .await
        .into_iter()
        .filter(|a| a.operation_id == op)
        .count();
    assert_eq!(deliveries, 1);
}

#[tokio::test]
async fn a_declined_reinstate_ends_the_subscription_on_both_sides() {
    let (stack, client, hooks) = stack_with(|_| {}, |policy| policy.decline_reinstate = true).await;
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    let sub_id = id.parse().unwrap();
    stack
        .azure
        .marketplace_action(sub_id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    wait_for(&stack, &id, "suspended", |s| {
        s.status == SubscriptionStatus::Suspended
    })
    .await;
    let reinstate = stack
        .azure
        .marketplace_action(sub_id, MarketplaceAction::Reinstate)
        .await
        .unwrap();

    wait_for(&stack, &id, "cancelled", |s| {
        s.status == SubscriptionStatus::Cancelled
    })
    .await;
    let theirs = stack.azure.subscription(sub_id).await.unwrap();
    assert_eq!(theirs["saasSubscriptionStatus"], "Unsubscribed");
    // Notify-only: the Reinstate was never PATCHed.
    assert_eq!(patches_to(&stack, &reinstate.to_string()).await, 0);
    let history = timeline(&stack, &id).await;
    assert!(
        history
            .iter()
            .any(|(k, o)| k == "lifecycle:reinstate" && o.contains("declined by policy")),
        "{history:?}"
    );
    eventually("the vendor hears why", || async {
        hook(&hooks, "subscription.cancellation_started", "reason").is_some()
    })
    .await;
    let told = hook(&hooks, "subscription.cancellation_started", "reason").unwrap();
    assert_eq!(told["data"]["reason"], "reinstate_declined");
    eventually("and that it ended", || async {
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|h| h["type"] == "subscription.cancelled")
    })
    .await;
}

#[tokio::test]
async fn our_own_change_in_progress_is_not_answered() {
    // Our seat change runs 2 s at Microsoft, notified InProgress then Succeeded (`Partner`).
    let (stack, client, _) = stack_with(|azure| azure.partner_operation_ms = 2_000, |_| {}).await;
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    let ours = stack
        .store
        .find_subscription(&Marketplace::AZURE, &id)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let page = manage_page(&stack, &client, &ours).await;
    let answer = client
        .post(format!(
            "{}/account/subscriptions/{ours}/quantity",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&page).as_str()), ("quantity", "12")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    wait_for(&stack, &id, "12 seats", |s| s.quantity == Some(12)).await;

    let ops = stack.azure.operations(id.parse().unwrap()).await;
    let op = ops
        .iter()
        .find(|o| o["action"] == "ChangeQuantity")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivered: Vec<_> = stack
        .azure
        .webhook_attempts()
        .await
        .into_iter()
        .filter(|a| a.operation_id.to_string() == op && a.status == Some(200))
        .collect();
    assert_eq!(
        delivered.len(),
        2,
        "InProgress, then Succeeded: {delivered:?}"
    );
    assert_eq!(patches_to(&stack, &op).await, 0, "not answered");
    let history = timeline(&stack, &id).await;
    assert!(
        !history.iter().any(|(k, _)| k == "change_requested"),
        "{history:?}"
    );
}

#[tokio::test]
async fn an_answer_microsoft_no_longer_takes_applies_what_it_settled_on() {
    // Microsoft's window is shorter than ours here: our refusal is sent in our window, and
    // Microsoft answers 409 (it accepted already).
    let (stack, client, hooks) = stack_with(
        |azure| azure.change_ack_timeout_ms = 300,
        |policy| policy.refuse_downgrades = true,
    )
    .await;
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    stack.azure.inject_errors(&id, InjectedError::Slow(800), 1);
    let op = downgrade(&stack, &id).await;

    wait_for(&stack, &id, "the accepted plan", |s| {
        s.plan_id == Some(PlanId::new("basic"))
    })
    .await;
    let conflicts = stack
        .azure
        .call_log()
        .await
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains(&op.to_string()) && c.status == 409)
        .count();
    assert_eq!(conflicts, 1, "our refusal came after Microsoft settled");
    eventually("the vendor hears it, marked", || async {
        hook(&hooks, "subscription.plan_changed", "auto_accepted").is_some()
    })
    .await;
}
