//! Vendor-side changes converge without Microsoft's webhook: the `Partner` notification after
//! our own PATCH or DELETE may never arrive, so marketlink polls the `Operation-Location` (an
//! outbox job) and applies what Microsoft then has.

use marketlink_core::{Marketplace, PlanId, SubscriptionStatus};
use marketlink_e2e::{Stack, browser_trusting, csrf, start_with};
use reqwest::{Client, StatusCode};

use crate::azure::{active_subscription, manage_page, wait_for};

async fn post_form(
    stack: &Stack,
    client: &Client,
    ours: &str,
    action: &str,
    extra: &[(&str, &str)],
) {
    let page = manage_page(stack, client, ours).await;
    let token = csrf(&page);
    let mut form = vec![("csrf", token.as_str())];
    form.extend_from_slice(extra);
    let answer = client
        .post(format!(
            "{}/account/subscriptions/{ours}/{action}",
            stack.app_url
        ))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{action} accepted");
}

#[tokio::test]
async fn vendor_changes_converge_when_no_webhook_comes() {
    let stack = start_with(|_| {}, |azure| azure.notify_partner_changes = false).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    let ours = stack
        .store
        .find_subscription(&Marketplace::AZURE, &id)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();

    post_form(&stack, &client, &ours, "quantity", &[("quantity", "12")]).await;
    wait_for(&stack, &id, "12 seats", |s| s.quantity == Some(12)).await;
    post_form(&stack, &client, &ours, "plan", &[("plan", "basic")]).await;
    wait_for(&stack, &id, "plan basic", |s| {
        s.plan_id == Some(PlanId::new("basic"))
    })
    .await;
    post_form(&stack, &client, &ours, "cancel", &[("confirm", "yes")]).await;
    wait_for(&stack, &id, "cancelled", |s| {
        s.status == SubscriptionStatus::Cancelled
    })
    .await;

    let history = manage_page(&stack, &client, &ours).await;
    assert!(
        history.contains("vendor_change_ended"),
        "the timeline says the operation was followed to its end"
    );
    assert!(
        !history.contains("inbox:"),
        "no Microsoft notification was applied"
    );
}
