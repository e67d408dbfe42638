//! Browser journeys: headless Chromium, driven over WebDriver, through the real server and the
//! marketplace sandboxes' own buyer pages. Each step asserts what the page says and saves a
//! screenshot (see `webdriver::screenshot_dir`); the README's tour uses a selection of them.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium chromium-driver`); without them the
//! tests fail, unless MARKETLINK_TEST_SKIP_BROWSER=1.

mod webdriver;

use marketlink_core::{Marketplace, Scope, SubscriptionStatus, TenantId};
use marketlink_e2e::{Stack, eventually, start, start_full, start_with};
use marketlink_sandbox::aws::OfferKind;
use marketlink_sandbox::azure::PurchaseRequest;
use serde_json::Value;
use webdriver::Browser;

const CLASSIC: &str = "mlsandboxclassic0000000001";
const CONCURRENT: &str = "mlsandboxconcurrent0000002";
const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const PASSWORD: &str = "correct-horse-battery";

/// A small SVG logo, as a vendor would configure it (`[branding] logo_url`).
const LOGO: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='28' height='28'%3E%3Crect width='28' height='28' rx='6' fill='%230f766e'/%3E%3Cpath d='M7 19l5-6 4 4 5-8' stroke='white' stroke-width='2.5' fill='none'/%3E%3C/svg%3E";

/// A browser, or an early return from the test when skipping was asked for.
macro_rules! browser {
    () => {
        match Browser::open().await {
            Some(browser) => browser,
            None => return,
        }
    };
}

async fn tenant_of(stack: &Stack, email: &str) -> TenantId {
    stack
        .store
        .find_user_by_email(email)
        .await
        .expect("store")
        .expect("the user exists")
        .0
        .tenant_id
}

/// The entitlement check, as the vendor's product calls it.
async fn check(stack: &Stack, key: &str, tenant: TenantId, feature: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}/api/v1/check?tenant={tenant}&product=analytics&feature={feature}",
            stack.app_url
        ))
        .bearer_auth(key)
        .send()
        .await
        .expect("check API")
        .json()
        .await
        .expect("check API answers JSON")
}

async fn read_key(stack: &Stack) -> String {
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key(
        "product",
        vec![Scope::EntitlementsRead],
        None,
        time::OffsetDateTime::UNIX_EPOCH,
    );
    stack.store.create_api_key(&key, &hash).await.expect("key");
    plaintext
}

/// A screenshot of one of our pages, after checking its basic accessibility (the sandboxes'
/// pages stand in for the marketplaces' and get a plain `browser.screenshot`).
async fn shot(browser: &Browser, name: &str) {
    let problems = browser.accessibility_problems().await;
    assert!(
        problems.is_empty(),
        "{name} ({}): {problems:?}",
        browser.url().await
    );
    browser.screenshot(name).await;
}

/// Fails when the page is wider than the viewport (sideways scrolling on a phone).
async fn assert_fits(browser: &Browser, what: &str) {
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            serde_json::json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "{what} scrolls sideways by {overflow} px on a narrow screen"
    );
}

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
    let buy = |product: &str, offer: OfferKind| {
        format!(
            "//div[.//code[text()='{product}']]//form[.//button[text()='{}']]//button",
            offer.label()
        )
    };
    let agreement_button = |product: &str, label: &str| {
        format!("//tr[.//td[contains(., '{product}')]]//button[text()='{label}']")
    };

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
            serde_json::json!([]),
        )
        .await;
    assert!(logo.as_i64().unwrap_or(0) > 0, "the vendor's logo is shown");
    shot(&browser, "aws-02-signup").await;
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
    shot(&browser, "aws-03-account-pending").await;

    // The session cookie: encrypted, HttpOnly, SameSite=Lax; not Secure on plain http.
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "marketlink_session")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");
    assert_eq!(session["secure"], false, "{session}");
    // Neither the cookie nor its base64 decoding shows what it holds. (Short needles such as
    // "ada" turn up in random ciphertext now and then.)
    let value = session["value"].as_str().unwrap_or_default();
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

    // The marketplace confirms (subscribe-success over SNS).
    let tenant = tenant_of(&stack, "ada@example.com").await;
    let key = read_key(&stack).await;
    // The check API answers from the entitlement index, which follows the database within
    // its sync interval.
    eventually("the check API says pending", || async {
        check(&stack, &key, tenant, "dashboards").await["reason"] == "pending"
    })
    .await;
    browser
        .goto(&format!("{}/aws/buyer/agreements", stack.aws_url))
        .await;
    browser.screenshot("aws-04-marketplace-agreements").await;
    browser
        .submit(&agreement_button(CLASSIC, "Send subscribe-success"))
        .await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    let active = browser.wait_for_text("Active", true).await;
    assert!(
        active.contains("Analytical Engines") && active.contains("seats: 10"),
        "{active}"
    );

    // Product access: the vendor's product asks the check API.
    eventually("the check API allows dashboards", || async {
        check(&stack, &key, tenant, "dashboards").await["allowed"] == true
    })
    .await;

    // A free trial of the second product, linked to the account the buyer is signed in to.
    browser.goto(&format!("{}/aws/buyer", stack.aws_url)).await;
    browser.submit(&buy(CONCURRENT, OfferKind::FreeTrial)).await;
    let link = browser.wait_for_text("Link to my account", false).await;
    assert!(
        link.contains("ada@example.com") && link.contains("Free trial"),
        "{link}"
    );
    shot(&browser, "aws-05-link-second-product").await;
    browser
        .submit("//button[text()='Link to my account']")
        .await;
    let both = browser
        .wait_for_text("Contoso Analytics for Teams", false)
        .await;
    assert!(both.contains("free trial"), "{both}");
    // AWS confirms the trial too (over EventBridge and SQS for this product): its end shows.
    browser
        .goto(&format!("{}/aws/buyer/agreements", stack.aws_url))
        .await;
    browser
        .submit(&agreement_button(CONCURRENT, "Send subscribe-success"))
        .await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    browser.wait_for_text("free trial until", true).await;
    shot(&browser, "aws-06-account-two-products").await;

    // The same overview on a phone: no sideways scrolling.
    browser.narrow(Some(390)).await;
    browser.refresh().await;
    browser.wait_for_text("Active", false).await;
    assert_fits(&browser, "the account overview").await;
    shot(&browser, "aws-07-account-phone").await;
    browser.narrow(None).await;

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
    shot(&browser, "aws-08-subscription").await;

    // The buyer cancels on AWS Marketplace: unsubscribe-pending, then unsubscribe-success.
    browser
        .goto(&format!("{}/aws/buyer/agreements", stack.aws_url))
        .await;
    browser
        .submit(&agreement_button(CLASSIC, "Cancel (unsubscribe-pending)"))
        .await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    browser.wait_for_text("Cancelling", true).await;
    shot(&browser, "aws-09-account-cancelling").await;
    browser
        .goto(&format!("{}/aws/buyer/agreements", stack.aws_url))
        .await;
    browser
        .submit(&agreement_button(CLASSIC, "Finalize (unsubscribe-success)"))
        .await;
    browser.goto(&format!("{}/account", stack.app_url)).await;
    let cancelled = browser.wait_for_text("Cancelled", true).await;
    assert!(!cancelled.contains("Cancelling"), "{cancelled}");
    shot(&browser, "aws-10-account-cancelled").await;
    eventually("the check API refuses after cancellation", || async {
        check(&stack, &key, tenant, "dashboards").await["allowed"] == false
    })
    .await;

    // Sign out, then back in with the keyboard only: Tab reaches the skip link first, then
    // the form's fields, each with a visible focus ring; Enter submits.
    browser.submit("//button[text()='Sign out']").await;
    browser.wait_for_text("Sign in", false).await;
    assert!(browser.url().await.ends_with("/signin"));
    shot(&browser, "sign-in").await;
    browser.keys(&TAB.to_string()).await;
    assert_eq!(browser.focused().await, ("Skip to content".into(), true));
    browser.keys(&format!("{TAB}{TAB}")).await;
    assert_eq!(browser.focused().await, ("email".into(), true));
    browser.keys(&format!("ada@example.com{TAB}")).await;
    assert_eq!(browser.focused().await, ("password".into(), true));
    browser.keys(&format!("{PASSWORD}{ENTER}")).await;
    browser.wait_for_text("Analytical Engines", false).await;
    assert!(browser.url().await.ends_with("/account"));
}

const TAB: char = '\u{E004}';
const ENTER: char = '\u{E007}';

/// Microsoft: the sandbox's portal → landing with ?token → Entra sign-in page → sign-up →
/// activated → the buyer changes plan on the marketplace (webhook) → our pages show it →
/// unsubscribe on the marketplace → cancelled.
#[tokio::test]
async fn azure_purchase_sign_in_activation_plan_change_and_unsubscribe() {
    let browser = browser!();
    let stack = start(|_| {}).await;
    let portal = format!("{}/sandbox/buyer", stack.azure.base_url);

    browser.goto(&portal).await;
    browser
        .select("select[name=plan]", "contoso-analytics|pro")
        .await;
    browser.fill("input[name=quantity]", "5").await;
    browser.select("select[name=buyer]", ALICE).await;
    browser.screenshot("azure-01-marketplace").await;
    browser
        .submit("//button[text()='Subscribe and configure account']")
        .await;

    // Our landing page sends the buyer to Microsoft's sign-in first.
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
        .script(
            "return document.getElementById('email').value;",
            serde_json::json!([]),
        )
        .await;
    assert!(
        email.as_str().is_some_and(|e| e.starts_with("alice@")),
        "email prefilled from the sign-in: {email}"
    );
    shot(&browser, "azure-03-signup").await;
    browser.fill_labelled("Your name", "Alice Buyer").await;
    browser.fill_labelled("Password", PASSWORD).await;
    browser.submit("//button[text()='Create account']").await;
    browser
        .wait_for_text("Your subscription is linked", false)
        .await;

    // Activation goes through the outbox to the marketplace.
    let active = browser.wait_for_text("Active", true).await;
    assert!(active.contains("pro"), "{active}");
    shot(&browser, "azure-04-account-active").await;
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

    // Product access follows the plan: pro includes exports.
    let key = read_key(&stack).await;
    let tenant = stack
        .store
        .get_subscription(id)
        .await
        .expect("store")
        .tenant_id
        .expect("linked");
    eventually("pro allows exports", || async {
        check(&stack, &key, tenant, "exports").await["allowed"] == true
    })
    .await;

    // On the marketplace: change plan to basic. Microsoft calls our webhook.
    browser.goto(&portal).await;
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
    shot(&browser, "azure-06-subscription-plan-changed").await;
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

/// Expired and invalid set-up links, on both marketplaces, and a set-up page opened directly:
/// each page says what happened and what to do.
#[tokio::test]
async fn expired_and_invalid_links_explain_what_to_do() {
    let browser = browser!();
    let stack = start_with(
        |aws| aws.token_ttl_secs = 1,
        |azure| azure.landing_token_ttl_secs = 1,
    )
    .await;

    browser
        .goto(&format!(
            "{}/aws/landing?x-amzn-marketplace-token=not-a-real-token",
            stack.app_url
        ))
        .await;
    let invalid = browser
        .wait_for_text("This subscription link is not valid", false)
        .await;
    assert!(
        invalid.contains("What you can do") && invalid.contains("Set up your account"),
        "{invalid}"
    );
    shot(&browser, "error-aws-invalid-token").await;

    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, "444455556666")
        .expect("purchase");
    let azure = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "basic".into(),
            quantity: None,
            buyer_object_id: ALICE.into(),
            subscription_name: None,
            is_test: false,
        })
        .await
        .expect("purchase");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let landing = reqwest::Url::parse_with_params(
        &format!("{}/aws/landing", stack.app_url),
        [("x-amzn-marketplace-token", &purchase.registration_token)],
    )
    .expect("landing URL");
    browser.goto(landing.as_str()).await;
    let expired = browser
        .wait_for_text("This subscription link has expired", false)
        .await;
    assert!(expired.contains("Return to AWS Marketplace"), "{expired}");
    shot(&browser, "error-aws-expired-token").await;

    browser.goto(&azure.landing_url).await;
    browser
        .submit(&format!(
            "//form[.//input[@name='user'][@value='{ALICE}']]//button"
        ))
        .await;
    // Microsoft answers an expired token like an unknown one; the page covers both.
    let expired = browser.wait_for_text("Configure account now", false).await;
    assert!(expired.contains("expired link is refused"), "{expired}");
    shot(&browser, "error-azure-expired-token").await;

    browser.goto(&format!("{}/signup", stack.app_url)).await;
    let nothing = browser
        .wait_for_text("There is no subscription waiting to be set up", false)
        .await;
    assert!(nothing.contains("Sign in to your account"), "{nothing}");
    shot(&browser, "error-no-pending-purchase").await;
}

/// The admin portal: sign-in, overview, tenants, subscriptions, a timeline, usage, and an API
/// key created in the portal that the check API then accepts.
#[tokio::test]
async fn admin_portal_main_views() {
    const OPERATOR: &str = "operator passphrase 42";
    let hash = marketlink_web::password::hash(OPERATOR.into())
        .await
        .expect("hash");
    let browser = browser!();
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = vec![marketlink_web::admin::AdminUser {
                email: "ops@vendor.example".into(),
                password_hash: hash,
            }];
        },
    )
    .await;
    let purchase = marketlink_e2e::aws_buyer_signs_up(
        &stack,
        &marketlink_e2e::browser(),
        OfferKind::Contract,
        "444455556666",
        "buyer@acme.example",
    )
    .await;
    stack
        .aws
        .send_subscription_event(
            &purchase.agreement_id,
            marketlink_sandbox::aws::SubscriptionAction::SubscribeSuccess,
        )
        .await
        .expect("subscribe-success");
    let tenant = tenant_of(&stack, "buyer@acme.example").await;

    // Another buyer asks the vendor's team to set the account up (the manual path).
    let other = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Contract, "777788889999")
        .expect("purchase");
    let landing = reqwest::Url::parse_with_params(
        &format!("{}/aws/landing", stack.app_url),
        [("x-amzn-marketplace-token", &other.registration_token)],
    )
    .expect("landing URL");
    browser.goto(landing.as_str()).await;
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
    shot(&browser, "onboarding-requested").await;

    browser.goto(&format!("{}/admin", stack.app_url)).await;
    browser.wait_for_text("Admin sign-in", false).await;
    shot(&browser, "admin-01-sign-in").await;
    browser.fill_labelled("Email", "ops@vendor.example").await;
    browser.fill_labelled("Password", OPERATOR).await;
    browser.submit("//button[text()='Sign in']").await;
    let overview = browser.wait_for_text("Overview", false).await;
    assert!(overview.contains("aws"), "{overview}");
    shot(&browser, "admin-02-overview").await;

    browser.submit("//nav//a[text()='Tenants']").await;
    let tenants = browser.wait_for_text("buyer@acme.example", false).await;
    assert!(tenants.contains("Customer Inc"), "{tenants}");
    shot(&browser, "admin-03-tenants").await;

    browser.submit("//nav//a[text()='Subscriptions']").await;
    browser.wait_for_text(CLASSIC, true).await;
    shot(&browser, "admin-04-subscriptions").await;
    browser
        .submit("//table//a[contains(@href, '/admin/subscriptions/')]")
        .await;
    let timeline = browser.wait_for_text("registered", false).await;
    assert!(timeline.contains("lifecycle:activate"), "{timeline}");
    shot(&browser, "admin-05-subscription-timeline").await;

    browser.submit("//nav//a[text()='Set-up requests']").await;
    let requests = browser.wait_for_text("grace@navy.example", false).await;
    assert!(
        requests.contains("Navy Labs") && requests.contains("Please call after 10am."),
        "{requests}"
    );
    shot(&browser, "admin-06-set-up-requests").await;

    browser.submit("//nav//a[text()='Usage']").await;
    browser.wait_for_text("Usage", false).await;
    shot(&browser, "admin-07-usage").await;

    browser.submit("//nav//a[text()='API keys']").await;
    browser.wait_for_text("Create a key", false).await;
    browser.fill_labelled("Name", "product backend").await;
    browser
        .click("input[name=scope][value='entitlements:read']")
        .await;
    browser.submit("//button[text()='Create key']").await;
    let created = browser.wait_for_text("Your new key", false).await;
    assert!(created.contains("product backend"), "{created}");
    shot(&browser, "admin-08-api-keys").await;
    let key = browser
        .script(
            "return document.querySelector('[role=status] code').textContent;",
            serde_json::json!([]),
        )
        .await;
    let key = key.as_str().expect("the new key is shown");
    eventually("the new key checks entitlements", || async {
        check(&stack, key, tenant, "dashboards").await["allowed"] == true
    })
    .await;
}

/// With `secure_cookies`, the session cookie is Secure too (and still HttpOnly, SameSite=Lax);
/// the cookie jar is encrypted, so a tampered value gives a fresh session, not an error.
#[tokio::test]
async fn session_cookie_is_secure_when_configured() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| config.server.secure_cookies = Some(true),
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!("{}/signin", stack.app_url))
        .send()
        .await
        .expect("sign-in page");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("marketlink_session="))
        .expect("a session cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let html = response.text().await.expect("page");
    let csrf = marketlink_e2e::csrf(&html);
    let (value, _) = cookie
        .trim_start_matches("marketlink_session=")
        .split_once(';')
        .expect("cookie attributes");
    assert!(!value.contains(&csrf), "the CSRF token is not readable");
    // A flipped byte: the form's token no longer matches any session, so it is refused.
    let mut tampered = value.to_owned();
    let last = tampered.pop().map(|c| if c == 'A' { 'B' } else { 'A' });
    tampered.extend(last);
    let refused = reqwest::Client::new()
        .post(format!("{}/signin", stack.app_url))
        .header("cookie", format!("marketlink_session={tampered}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "x@example.com"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
}
