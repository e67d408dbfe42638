//! The Google journey: a buyer purchases on the sandbox's Google Cloud console page, which
//! POSTs the signed sign-up token to our sign-up URL (as "Sign up with provider" does), sets up
//! an account with us, and sees the subscription active once we have approved the account and
//! the entitlement at Google; then cancels on the console and sees it end.

use std::sync::Arc;

use marketlink_cli::sandbox::{
    RunningGcp, VendorUrls, gcp_demo_scenario, gcp_provider_config, start_gcp,
};
use marketlink_core::{Marketplace, SubscriptionStatus, SystemClock};
use marketlink_e2e::{Stack, eventually, start_full};
use tokio_util::sync::CancellationToken;

use crate::{
    browser::Browser,
    checks::shot,
    fixtures::{PASSWORD, check, read_key, tenant_of},
};

const EMAIL: &str = "grace@example.com";

/// Google: the sandbox's console page → "Purchase and register" (pro) → our sign-up, reached
/// by the token's form POST → account created → we approve the account and the entitlement →
/// active on our account page and on Google's side, pro's features allowed → the buyer cancels
/// on the console → cancelled on our page.
#[tokio::test]
async fn gcp_purchase_sign_up_activation_and_cancellation() {
    let browser = browser!();
    let mut stack = start_full(|_| {}, |_| {}, |_| {}).await;
    let key_dir = tempfile::tempdir().expect("temp dir");
    let sandbox = with_google(&mut stack, &key_dir).await;
    let console = format!("{}/sandbox/gcp/buyer", sandbox.base_url);

    buy_pro_and_sign_up(&browser, &console).await;
    let entitlement = the_entitlement(&stack).await;

    // Activation: the outbox approves the account, then the entitlement; Google's
    // ENTITLEMENT_ACTIVE message follows over Pub/Sub pull.
    let active = browser.wait_for_text("Active", true).await;
    assert!(active.contains("pro"), "{active}");
    assert!(active.contains("Google Cloud Marketplace"), "{active}");
    shot(&browser, "gcp-03-account-active").await;
    browser.goto(&console).await;
    let row = browser.wait_for_text("ENTITLEMENT_ACTIVE", true).await;
    assert!(row.contains(&entitlement), "{row}");
    browser.screenshot("gcp-04-console-active").await;

    let tenant = tenant_of(&stack, EMAIL).await;
    let key = read_key(&stack).await;
    eventually("pro allows exports", || async {
        check(&stack, &key, tenant, "exports").await["allowed"] == true
    })
    .await;

    // The buyer cancels on the console; Procurement's message ends the subscription here.
    browser
        .submit(&format!(
            "//tr[td[text()='{entitlement}']]//button[text()='Cancel now']"
        ))
        .await;
    browser.wait_for_text("ENTITLEMENT_CANCELLED", true).await;
    let id = stack
        .store
        .find_subscription(&google(), &entitlement)
        .await
        .expect("store")
        .expect("the Google subscription")
        .id;
    browser
        .goto(&format!("{}/account/subscriptions/{id}", stack.app_url))
        .await;
    browser.wait_for_text("Cancelled", true).await;
    shot(&browser, "gcp-05-subscription-cancelled").await;
    eventually("cancelled in the store", || async {
        stack
            .store
            .get_subscription(id)
            .await
            .expect("store")
            .status
            == SubscriptionStatus::Cancelled
    })
    .await;
}

/// Starts the Google sandbox as `marketlink demo` does (its buyer page posting to our
/// `/gcp/landing`), points the server's `[gcp]` at it and restarts the server with it. (The
/// journeys' harness gains a Google stack on branch gcp-wire; this uses only the CLI's own
/// demo wiring, so it does not wait for it.)
async fn with_google(stack: &mut Stack, key_dir: &tempfile::TempDir) -> RunningGcp {
    let google = start_gcp(
        "127.0.0.1:0".parse().expect("address"),
        gcp_demo_scenario(),
        &VendorUrls::for_public_url(&stack.app_url),
        Arc::new(SystemClock),
        CancellationToken::new(),
    )
    .await
    .expect("the Google sandbox starts");
    let key_file = key_dir.path().join("gcp-service-account.json");
    stack.config.gcp = Some(
        gcp_provider_config(&google, &key_file, &stack.app_url)
            .expect("the Google provider's configuration"),
    );
    stack.restart().await;
    google
}

fn google() -> Marketplace {
    Marketplace::parse("gcp").expect("a valid name")
}

/// Buys pro on the console page; its auto-submitting form lands on our sign-up page, named
/// for Google, where the buyer creates an account.
async fn buy_pro_and_sign_up(browser: &Browser, console: &str) {
    browser.goto(console).await;
    browser
        .wait_for_text("Google Cloud Marketplace (sandbox)", false)
        .await;
    browser
        .click("form[action$='/purchase'] select[name=plan] option:nth-child(2)")
        .await;
    let chosen = browser
        .script("return document.querySelector(\"form[action$='/purchase'] select\").value;")
        .await;
    assert_eq!(chosen, "pro", "the console's second plan is pro");
    browser.screenshot("gcp-01-console").await;
    browser
        .submit("//button[text()='Purchase and register']")
        .await;

    let signup = browser.wait_for_text("Set up your account", false).await;
    assert!(browser.url().await.ends_with("/signup"));
    assert!(signup.contains("Google Cloud Marketplace"), "{signup}");
    assert!(signup.contains("pro"), "{signup}");
    shot(browser, "gcp-02-signup").await;
    browser.fill_labelled("Your name", "Grace Hopper").await;
    browser.fill_labelled("Company", "Compilers Inc").await;
    browser.fill_labelled("Work email", EMAIL).await;
    browser.fill_labelled("Password", PASSWORD).await;
    browser.submit("//button[text()='Create account']").await;
    browser
        .wait_for_text("Your subscription is linked", false)
        .await;
}

/// The entitlement id of the one Google subscription, stored once the sign-up resolved it.
async fn the_entitlement(stack: &Stack) -> String {
    let subscriptions = stack
        .store
        .list_subscriptions(&marketlink_store::SubscriptionFilter {
            marketplace: Some(google()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("store");
    assert_eq!(subscriptions.len(), 1, "one Google subscription");
    subscriptions[0].external.external_id.clone()
}
