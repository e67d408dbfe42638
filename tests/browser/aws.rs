//! The AWS journey: a buyer purchases on the sandbox's AWS Marketplace pages, sets up an
//! account with us, gets access, links a second product, and cancels; then signs in again
//! with the keyboard only.

use fantoccini::key::Key;
use marketlink_core::TenantId;
use marketlink_e2e::{Stack, eventually, start_full};
use marketlink_sandbox::aws::OfferKind;

use crate::{
    browser::Browser,
    checks::{assert_fits, focused, shot},
    fixtures::{CLASSIC, CONCURRENT, LOGO, PASSWORD, check, read_key, tenant_of},
};

/// AWS: the sandbox's buyer page → a 10-seat contract → our landing → sign-up → subscribe-success
/// (sent from the sandbox's agreements page) → active, the check API allows a feature → a free
/// trial of a second product, linked to the signed-in account → the buyer cancels the contract
/// on the marketplace → cancelling, then cancelled.
#[tokio::test]
async fn aws_purchase_registration_access_and_cancellation() {
    let browser = browser!();
    let stack = start_full(
        |_| {},
        |_| {},
        |config| config.branding.logo_url = Some(LOGO.into()),
    )
    .await;

    buy_a_contract_and_sign_up(&browser, &stack).await;
    session_cookie_is_private(&browser).await;
    let tenant = tenant_of(&stack, "ada@example.com").await;
    let key = read_key(&stack).await;
    marketplace_confirms_the_contract(&browser, &stack, &key, tenant).await;
    link_a_free_trial_of_the_second_product(&browser, &stack).await;
    overview_fits_a_phone(&browser).await;
    subscription_page_points_to_aws(&browser).await;
    buyer_cancels_on_the_marketplace(&browser, &stack, &key, tenant).await;
    sign_out_and_in_with_the_keyboard(&browser).await;
}

/// The sandbox's button that buys `offer` of `product`.
fn buy(product: &str, offer: OfferKind) -> String {
    format!(
        "//div[.//code[text()='{product}']]//form[.//button[text()='{}']]//button",
        offer.label()
    )
}

/// Opens the sandbox's agreements page.
async fn open_agreements(browser: &Browser, stack: &Stack) {
    browser
        .goto(&format!("{}/aws/buyer/agreements", stack.aws_url))
        .await;
}

/// Presses `label` on `product`'s row of the agreements page (the marketplace notifies us).
async fn agreement_action(browser: &Browser, product: &str, label: &str) {
    browser
        .submit(&format!(
            "//tr[.//td[contains(., '{product}')]]//button[text()='{label}']"
        ))
        .await;
}

/// The contract on the sandbox's buyer page, then our sign-up (branded with the vendor's
/// logo), then the account waiting for the marketplace.
async fn buy_a_contract_and_sign_up(browser: &Browser, stack: &Stack) {
    browser.goto(&format!("{}/aws/buyer", stack.aws_url)).await;
    browser.wait_for_text("Buy on AWS Marketplace", false).await;
    browser.screenshot("aws-01-marketplace").await;
    browser.submit(&buy(CLASSIC, OfferKind::Contract)).await;

    // The sandbox posts the registration token to our landing page, which resolves it.
    let signup = browser.wait_for_text("Set up your account", false).await;
    assert!(browser.url().await.ends_with("/signup"));
    assert!(signup.contains("AWS Marketplace") && signup.contains("Contoso Analytics"));
    assert!(browser.title().await.contains("Contoso Analytics (demo)"));
    let logo = browser
        .script(
            "const img = document.querySelector('header .brand img'); return img ? img.naturalWidth : 0;",
        )
        .await;
    assert!(logo.as_i64().unwrap_or(0) > 0, "the vendor's logo is shown");
    shot(browser, "aws-02-signup").await;
    browser.fill_labelled("Your name", "Ada Lovelace").await;
    browser.fill_labelled("Company", "Analytical Engines").await;
    browser.fill_labelled("Work email", "ada@example.com").await;
    browser.fill_labelled("Password", PASSWORD).await;
    browser.submit("//button[text()='Create account']").await;

    let pending = browser
        .wait_for_text("Your subscription is linked", false)
        .await;
    assert!(
        pending.contains("Waiting for the marketplace to confirm"),
        "{pending}"
    );
    shot(browser, "aws-03-account-pending").await;
}

/// The session cookie: encrypted, HttpOnly, SameSite=Lax; not Secure on plain http.
async fn session_cookie_is_private(browser: &Browser) {
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c.name() == "marketlink_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true), "{session}");
    let same_site = session.same_site().map(|s| s.to_string());
    assert_eq!(same_site.as_deref(), Some("Lax"), "{session}");
    assert_eq!(session.secure(), Some(false), "{session}");
    // Neither the cookie nor its base64 decoding shows what it holds. (Short needles such as
    // "ada" turn up in random ciphertext now and then.)
    let value = session.value();
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        value
            .replace("%2F", "/")
            .replace("%2B", "+")
            .replace("%3D", "="),
    )
    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    .unwrap_or_default();
    for readable in [value, decoded.as_str()] {
        assert!(
            !readable.contains("ada@example.com") && !readable.contains("\"csrf\""),
            "the session is not readable: {value}"
        );
    }
}

/// The marketplace confirms (subscribe-success over SNS): the account shows the contract and
/// the check API, pending until then, allows a feature.
async fn marketplace_confirms_the_contract(
    browser: &Browser,
    stack: &Stack,
    key: &str,
    tenant: TenantId,
) {
    // The check API answers from the entitlement index, which follows the database within
    // its sync interval.
    eventually("the check API says pending", || async {
        check(stack, key, tenant, "dashboards").await["reason"] == "pending"
    })
    .await;
    open_agreements(browser, stack).await;
    browser.screenshot("aws-04-marketplace-agreements").await;
    agreement_action(browser, CLASSIC, "Send subscribe-success").await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    // Activation is stored first and the contract's entitlements are read right after it
    // (AWS lists them only once the agreement is subscribed), so the page may show "Active"
    // a moment before the seats: wait for both.
    browser.wait_for_text("Active", true).await;
    let active = browser.wait_for_text("seats: 10", true).await;
    assert!(
        active.contains("Analytical Engines") && active.contains("Active"),
        "{active}"
    );

    // Product access: the vendor's product asks the check API.
    eventually("the check API allows dashboards", || async {
        check(stack, key, tenant, "dashboards").await["allowed"] == true
    })
    .await;
}

/// A free trial of the second product, linked to the account the buyer is signed in to.
async fn link_a_free_trial_of_the_second_product(browser: &Browser, stack: &Stack) {
    browser.goto(&format!("{}/aws/buyer", stack.aws_url)).await;
    browser.submit(&buy(CONCURRENT, OfferKind::FreeTrial)).await;
    let link = browser.wait_for_text("Link to my account", false).await;
    assert!(
        link.contains("ada@example.com") && link.contains("Free trial"),
        "{link}"
    );
    shot(browser, "aws-05-link-second-product").await;
    browser
        .submit("//button[text()='Link to my account']")
        .await;
    let both = browser
        .wait_for_text("Contoso Analytics for Teams", false)
        .await;
    assert!(both.contains("free trial"), "{both}");
    // AWS confirms the trial too (over EventBridge and SQS for this product): its end shows.
    open_agreements(browser, stack).await;
    agreement_action(browser, CONCURRENT, "Send subscribe-success").await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    browser.wait_for_text("free trial until", true).await;
    shot(browser, "aws-06-account-two-products").await;
}

/// The same overview on a phone: no sideways scrolling.
async fn overview_fits_a_phone(browser: &Browser) {
    browser.narrow(Some(390)).await;
    browser.refresh().await;
    browser.wait_for_text("Active", false).await;
    assert_fits(browser, "the account overview").await;
    shot(browser, "aws-07-account-phone").await;
    browser.narrow(None).await;
}

/// The contract's page: its history, and where its plan is changed (on AWS, not here).
async fn subscription_page_points_to_aws(browser: &Browser) {
    browser
        .submit("//tr[.//td[text()='Contoso Analytics' or strong='Contoso Analytics']]//a[starts-with(., 'Manage')]")
        .await;
    let detail = browser.wait_for_text("History", false).await;
    assert!(
        detail.contains(
            "Plan and contract changes for this subscription are made on AWS Marketplace"
        ) && detail.contains("seats"),
        "{detail}"
    );
    shot(browser, "aws-08-subscription").await;
}

/// The buyer cancels on AWS Marketplace: unsubscribe-pending, then unsubscribe-success; the
/// check API then refuses.
async fn buyer_cancels_on_the_marketplace(
    browser: &Browser,
    stack: &Stack,
    key: &str,
    tenant: TenantId,
) {
    open_agreements(browser, stack).await;
    agreement_action(browser, CLASSIC, "Cancel (unsubscribe-pending)").await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    browser.wait_for_text("Cancelling", true).await;
    shot(browser, "aws-09-account-cancelling").await;
    open_agreements(browser, stack).await;
    agreement_action(browser, CLASSIC, "Finalize (unsubscribe-success)").await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    let cancelled = browser.wait_for_text("Cancelled", true).await;
    assert!(!cancelled.contains("Cancelling"), "{cancelled}");
    shot(browser, "aws-10-account-cancelled").await;
    eventually("the check API refuses after cancellation", || async {
        check(stack, key, tenant, "dashboards").await["allowed"] == false
    })
    .await;
}

/// Sign out, then back in with the keyboard only: Tab reaches the skip link first, then the
/// form's fields, each with a visible focus ring; Enter submits.
async fn sign_out_and_in_with_the_keyboard(browser: &Browser) {
    browser.submit("//button[text()='Sign out']").await;
    browser.wait_for_text("Sign in", false).await;
    assert!(browser.url().await.ends_with("/signin"));
    shot(browser, "sign-in").await;
    let (tab, enter) = (char::from(Key::Tab), char::from(Key::Enter));
    browser.keys(&tab.to_string()).await;
    assert_eq!(focused(browser).await, ("Skip to content".into(), true));
    browser.keys(&format!("{tab}{tab}")).await;
    assert_eq!(focused(browser).await, ("email".into(), true));
    browser.keys(&format!("ada@example.com{tab}")).await;
    assert_eq!(focused(browser).await, ("password".into(), true));
    browser.keys(&format!("{PASSWORD}{enter}")).await;
    browser.wait_for_text("Analytical Engines", false).await;
    assert!(browser.url().await.ends_with("/account"));
}
