//! The vendor's side: a buyer asks for a set-up call, and an operator walks the admin portal
//! and creates an API key there that the check API then accepts.

use marketlink_core::TenantId;
use marketlink_e2e::{Stack, eventually, start_full};
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};

use crate::{
    browser::Browser,
    checks::shot,
    fixtures::{CLASSIC, CONCURRENT, check, tenant_of},
};

const OPERATOR: &str = "operator passphrase 42";

/// The admin portal: sign-in, overview, tenants, subscriptions, a timeline, usage, and an API
/// key created in the portal that the check API then accepts.
#[tokio::test]
async fn admin_portal_main_views() {
    let ops = marketlink_e2e::operator("ops@vendor.example", OPERATOR).await;
    let browser = browser!();
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = vec![ops];
        },
    )
    .await;
    let tenant = an_active_customer(&stack).await;
    ask_for_a_set_up_call(&browser, &stack).await;

    browser.goto(&format!("{}/admin", stack.app_url)).await;
    browser.wait_for_text("Admin sign-in", false).await;
    shot(&browser, "admin-01-sign-in").await;
    browser.fill_labelled("Email", "ops@vendor.example").await;
    browser.fill_labelled("Password", OPERATOR).await;
    browser.submit("//button[text()='Sign in']").await;
    let overview = browser.wait_for_text("Overview", false).await;
    assert!(overview.contains("aws"), "{overview}");
    shot(&browser, "admin-02-overview").await;

    walk_the_views(&browser).await;
    let key = create_an_api_key(&browser).await;
    eventually("the new key checks entitlements", || async {
        check(&stack, &key, tenant, "dashboards").await["allowed"] == true
    })
    .await;
}

/// A buyer who signed up (over HTTP, without the browser) and whose contract AWS confirmed.
async fn an_active_customer(stack: &Stack) -> TenantId {
    let purchase = marketlink_e2e::aws_buyer_signs_up(
        stack,
        &marketlink_e2e::browser(),
        OfferKind::Contract,
        "444455556666",
        "buyer@acme.example",
    )
    .await;
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .expect("subscribe-success");
    tenant_of(stack, "buyer@acme.example").await
}

/// Another buyer asks the vendor's team to set the account up (the manual path).
async fn ask_for_a_set_up_call(browser: &Browser, stack: &Stack) {
    let other = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Contract, "777788889999")
        .expect("purchase");
    browser
        .post_form(
            &format!("{}/aws/landing", stack.app_url),
            &[(
                "x-amzn-marketplace-token",
                other.registration_token.as_str(),
            )],
        )
        .await;
    browser
        .wait_for_text("Prefer that we set it up for you?", false)
        .await;
    browser.fill("#contact-name", "Grace Hopper").await;
    browser.fill("#contact-email", "grace@navy.example").await;
    browser.fill("#contact-company", "Navy Labs").await;
    browser
        .fill("#contact-message", "Please call after 10am.")
        .await;
    browser
        .submit("//button[text()='Ask for a set-up call']")
        .await;
    let thanks = browser
        .wait_for_text("We are setting up your account", false)
        .await;
    assert!(thanks.contains("grace@navy.example"), "{thanks}");
    shot(browser, "onboarding-requested").await;
}

/// Tenants, subscriptions and one's timeline, set-up requests and usage, from the menu.
async fn walk_the_views(browser: &Browser) {
    browser.submit("//nav//a[text()='Tenants']").await;
    let tenants = browser.wait_for_text("buyer@acme.example", false).await;
    assert!(tenants.contains("Customer Inc"), "{tenants}");
    shot(browser, "admin-03-tenants").await;

    browser.submit("//nav//a[text()='Subscriptions']").await;
    browser.wait_for_text(CLASSIC, true).await;
    shot(browser, "admin-04-subscriptions").await;
    browser
        .submit("//table//a[contains(@href, '/admin/subscriptions/')]")
        .await;
    let timeline = browser.wait_for_text("registered", false).await;
    assert!(timeline.contains("lifecycle:activate"), "{timeline}");
    shot(browser, "admin-05-subscription-timeline").await;

    browser.submit("//nav//a[text()='Set-up requests']").await;
    let requests = browser.wait_for_text("grace@navy.example", false).await;
    assert!(
        requests.contains("Navy Labs") && requests.contains("Please call after 10am."),
        "{requests}"
    );
    shot(browser, "admin-06-set-up-requests").await;

    browser.submit("//nav//a[text()='Usage']").await;
    browser.wait_for_text("Usage", false).await;
    shot(browser, "admin-07-usage").await;
}

/// A key that may read entitlements, created in the portal; returns the key it shows once.
async fn create_an_api_key(browser: &Browser) -> String {
    browser.submit("//nav//a[text()='API keys']").await;
    browser.wait_for_text("Create a key", false).await;
    browser.fill_labelled("Name", "product backend").await;
    browser
        .click("input[name=scope][value='entitlements:read']")
        .await;
    browser.submit("//button[text()='Create key']").await;
    let created = browser.wait_for_text("Your new key", false).await;
    assert!(created.contains("product backend"), "{created}");
    shot(browser, "admin-08-api-keys").await;
    let key = browser
        .script("return document.querySelector('[role=status] code').textContent;")
        .await;
    key.as_str().expect("the new key is shown").to_owned()
}
