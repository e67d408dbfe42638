//! The Microsoft journey: a buyer subscribes on the sandbox's portal, signs in with Entra,
//! sets up an account, and the plan change and unsubscription made on the marketplace show
//! on our pages and in product access.

use marketlink_core::{Marketplace, SubscriptionId, SubscriptionStatus, TenantId};
use marketlink_e2e::{Stack, eventually, start};

use crate::{
    browser::Browser,
    checks::shot,
    fixtures::{ALICE, PASSWORD, check, read_key},
};

/// Microsoft: the sandbox's portal → landing with ?token → Entra sign-in page → sign-up →
/// activated → the buyer changes plan on the marketplace (webhook) → our pages show it →
/// unsubscribe on the marketplace → cancelled.
#[tokio::test]
async fn azure_purchase_sign_in_activation_plan_change_and_unsubscribe() {
    let browser = browser!();
    let stack = start(|_| {}).await;
    let portal = format!("{}/sandbox/buyer", stack.azure.base_url);

    subscribe_sign_in_and_sign_up(&browser, &portal).await;
    // Activation goes through the outbox to the marketplace.
    let active = browser.wait_for_text("Active", true).await;
    assert!(active.contains("pro"), "{active}");
    shot(&browser, "azure-04-account-active").await;
    let (id, tenant) = the_subscription(&stack).await;

    // Product access follows the plan: pro includes exports.
    let key = read_key(&stack).await;
    eventually("pro allows exports", || async {
        check(&stack, &key, tenant, "exports").await["allowed"] == true
    })
    .await;

    change_plan_to_basic(&browser, &stack, &portal, id).await;
    eventually("basic no longer allows exports", || async {
        check(&stack, &key, tenant, "exports").await["reason"] == "feature_not_in_plan"
    })
    .await;

    // Unsubscribe on the marketplace.
    browser.goto(&portal).await;
    browser.submit("//button[text()='Unsubscribe']").await;
    browser
        .goto(&format!("{}/account/subscriptions/{id}", stack.app_url))
        .await;
    browser.wait_for_text("Cancelled", true).await;
    shot(&browser, "azure-07-subscription-cancelled").await;
    let stored = stack.store.get_subscription(id).await.expect("store");
    assert_eq!(stored.status, SubscriptionStatus::Cancelled);
}

/// Five seats of pro on the portal; our landing page sends the buyer to Microsoft's sign-in
/// first, then to a sign-up prefilled from it.
async fn subscribe_sign_in_and_sign_up(browser: &Browser, portal: &str) {
    browser.goto(portal).await;
    browser
        .select("select[name=plan]", "contoso-analytics|pro")
        .await;
    browser.fill("input[name=quantity]", "5").await;
    browser.select("select[name=buyer]", ALICE).await;
    browser.screenshot("azure-01-marketplace").await;
    browser
        .submit("//button[text()='Subscribe and configure account']")
        .await;

    browser.wait_for_text("Pick an account", false).await;
    browser.screenshot("azure-02-entra-sign-in").await;
    browser
        .submit(&format!(
            "//form[.//input[@name='user'][@value='{ALICE}']]//button"
        ))
        .await;

    let signup = browser.wait_for_text("Set up your account", false).await;
    assert!(signup.contains("Microsoft"), "{signup}");
    assert!(signup.contains("pro") && signup.contains('5'), "{signup}");
    let email = browser
        .script("return document.getElementById('email').value;")
        .await;
    assert!(
        email.as_str().is_some_and(|e| e.starts_with("alice@")),
        "email prefilled from the sign-in: {email}"
    );
    shot(browser, "azure-03-signup").await;
    browser.fill_labelled("Your name", "Alice Buyer").await;
    browser.fill_labelled("Password", PASSWORD).await;
    browser.submit("//button[text()='Create account']").await;
    browser
        .wait_for_text("Your subscription is linked", false)
        .await;
}

/// The Microsoft subscription and the tenant it is linked to.
async fn the_subscription(stack: &Stack) -> (SubscriptionId, TenantId) {
    let id = stack
        .store
        .list_subscriptions(&marketlink_store::SubscriptionFilter {
            marketplace: Some(Marketplace::AZURE),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("store")
        .first()
        .expect("the Microsoft subscription")
        .id;
    let tenant = stack
        .store
        .get_subscription(id)
        .await
        .expect("store")
        .tenant_id
        .expect("linked");
    (id, tenant)
}

/// On the marketplace: change plan to basic. Microsoft calls our webhook and the
/// subscription's page follows.
async fn change_plan_to_basic(browser: &Browser, stack: &Stack, portal: &str, id: SubscriptionId) {
    browser.goto(portal).await;
    browser
        .select("form[action$='/change_plan'] select", "basic")
        .await;
    browser.screenshot("azure-05-marketplace-change-plan").await;
    browser.submit("//button[text()='Change plan']").await;
    browser
        .goto(&format!("{}/account/subscriptions/{id}", stack.app_url))
        .await;
    let changed = browser.wait_for_text("basic", true).await;
    assert!(changed.contains("Active"), "{changed}");
    shot(browser, "azure-06-subscription-plan-changed").await;
}
