//! What marketlink answers Microsoft's webhook, through the real server. Microsoft retries a
//! webhook answered 5xx (500 times over 8 hours) and reads a 4xx to a change as a refusal: so
//! 401 only for a token that fails validation, 503 when we cannot check it now; and the
//! unsigned mode for Microsoft's SaaS API emulator.

use marketlink_azure::WebhookAuth;
use marketlink_core::SubscriptionStatus;
use marketlink_e2e::{Stack, browser, browser_trusting, start, start_full};
use marketlink_sandbox::azure::MarketplaceAction;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::azure::{active_subscription, wait_for};

fn made_up_operation() -> Value {
    json!({
        "id": uuid::Uuid::new_v4(),
        "subscriptionId": uuid::Uuid::new_v4(),
        "action": "Unsubscribe",
        "status": "Succeeded",
        "planId": null,
        "quantity": null,
        "purchaseToken": null
    })
}

async fn post(stack: &Stack, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = browser()
        .post(format!("{}/azure/webhook", stack.app_url))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn an_unsigned_webhook_is_refused_and_one_we_cannot_check_is_retried() {
    let stack = start(|_| {}).await;
    let (status, body) = post(&stack, None, &made_up_operation()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Entra's keys cannot be fetched: a genuine token cannot be checked now, so the answer
    // makes Microsoft come back rather than refuse the change.
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            if let Some(azure) = config.azure.as_mut() {
                azure.jwks_url = Some("http://127.0.0.1:1/keys".into());
            }
        },
    )
    .await;
    let token = stack.azure.mint_webhook_token().unwrap();
    let (status, body) = post(&stack, Some(&token), &made_up_operation()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // A token that fails validation is still refused while the keys are unreachable.
    let (status, body) = post(&stack, Some("not-a-jwt"), &made_up_operation()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn emulator_mode_takes_unsigned_webhooks() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            if let Some(azure) = config.azure.as_mut() {
                azure.webhook_auth = WebhookAuth::None;
            }
        },
    )
    .await;
    let (status, body) = post(&stack, None, &made_up_operation()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "stored", "{body}");

    // The marketplace flow still runs: every notice is confirmed with Get Operation.
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = active_subscription(&stack, &client, "basic", None).await;
    stack
        .azure
        .marketplace_action(id.parse().unwrap(), MarketplaceAction::Suspend)
        .await
        .unwrap();
    wait_for(&stack, &id, "suspended", |s| {
        s.status == SubscriptionStatus::Suspended
    })
    .await;
}

/// Renames the inbox table away (or back): the database then cannot store a webhook, as when
/// it is down, while the rest of the server runs.
async fn inbox_table(stack: &Stack, from: &str, to: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::SqliteConnection::connect(&stack.config.database.url)
        .await
        .unwrap();
    conn.execute(format!("ALTER TABLE {from} RENAME TO {to}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_webhook_our_database_cannot_store_is_answered_503_and_the_retry_applies() {
    let stack = start_full(
        |_| {},
        |azure| azure.webhook_retry_delays_ms = vec![300],
        |_| {},
    )
    .await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = active_subscription(&stack, &client, "basic", None).await;

    inbox_table(&stack, "inbox_messages", "inbox_messages_away").await;
    let op = stack
        .azure
        .marketplace_action(id.parse().unwrap(), MarketplaceAction::Suspend)
        .await
        .unwrap();
    marketlink_e2e::eventually("the webhook was answered 503", || async {
        stack
            .azure
            .webhook_attempts()
            .await
            .iter()
            .any(|a| a.operation_id == op && a.status == Some(503))
    })
    .await;
    inbox_table(&stack, "inbox_messages_away", "inbox_messages").await;

    wait_for(&stack, &id, "suspended by the retried webhook", |s| {
        s.status == SubscriptionStatus::Suspended
    })
    .await;
    let attempts: Vec<Option<u16>> = stack
        .azure
        .webhook_attempts()
        .await
        .iter()
        .filter(|a| a.operation_id == op)
        .map(|a| a.status)
        .collect();
    assert_eq!(attempts.last(), Some(&Some(200)), "{attempts:?}");
    assert!(!attempts.contains(&Some(401)), "{attempts:?}");
}
