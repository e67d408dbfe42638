//! Microsoft: two Entra apps, as Microsoft recommends. The API app (single-tenant, publisher
//! tenant) calls the Fulfillment API; the landing-page app (multi-tenant) signs buyers of any
//! organisation in. A single-tenant app used for sign-in refuses other tenants' buyers on
//! Entra's own page; personal Microsoft accounts only where both the app and the vendor admit
//! them; an error Entra sends back is explained on our landing page.

use marketlink_core::{Marketplace, SubscriptionStatus};
use marketlink_e2e::{
    Stack, azure_land_and_sign_in as land_and_sign_in, browser_trusting, eventually, start,
    start_full, submit_form,
};
use marketlink_sandbox::azure::{PurchaseRequest, SignInAudience};
use reqwest::{Client, StatusCode};

const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const DAVE: &str = "33333333-cccc-4ddd-8eee-000000000004";

/// `buyer` buys the basic plan; returns the subscription id and its landing link.
async fn buy(stack: &Stack, buyer: &str) -> (String, String) {
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "basic".into(),
            quantity: None,
            buyer_object_id: buyer.into(),
            subscription_name: None,
            is_test: false,
        })
        .await
        .unwrap();
    (purchase.subscription_id.to_string(), purchase.landing_url)
}

/// Opens the landing link and the sign-in page it leads to, then picks `field` (`user` or
/// `cancel`) there: the sign-in page's answer, unfollowed.
async fn pick_at_entra(client: &Client, landing: &str, field: (&str, &str)) -> reqwest::Response {
    let landed = client.get(landing).send().await.unwrap();
    assert_eq!(
        landed.status(),
        StatusCode::SEE_OTHER,
        "sign-in comes first"
    );
    let authorize = landed.headers()["location"].to_str().unwrap().to_owned();
    let page = client.get(&authorize).send().await.unwrap();
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "{}",
        page.text().await.unwrap()
    );
    let mut form: Vec<(String, String)> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    form.push((field.0.into(), field.1.into()));
    client.post(&authorize).form(&form).send().await.unwrap()
}

/// Nothing of `id` was claimed.
async fn unclaimed(stack: &Stack, id: &str) {
    let stored = stack
        .store
        .find_subscription(&Marketplace::AZURE, id)
        .await
        .unwrap();
    assert!(stored.is_none_or(|s| s.tenant_id.is_none()), "not claimed");
}

#[tokio::test]
async fn a_buyer_of_another_tenant_signs_in_with_the_landing_app_and_the_api_app_does_the_rest() {
    let stack = start(|_| {}).await;
    let sandbox = stack.azure.config().clone();
    let api_app = sandbox.publisher_app_id.clone();
    let landing_app = sandbox.landing_app.clone().unwrap().client_id;
    assert_eq!(
        sandbox.publisher_app_sign_in_audience,
        SignInAudience::AzureADMyOrg
    );
    let alice = sandbox.users.iter().find(|u| u.object_id == ALICE).unwrap();
    assert_ne!(
        alice.tenant_id, sandbox.publisher_tenant_id,
        "another tenant"
    );

    let (id, landing) = buy(&stack, ALICE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let back = land_and_sign_in(&client, &landing, ALICE).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(back.headers()["location"], "/signup");
    let signup = format!("{}/signup", stack.app_url);
    let done = submit_form(
        &client,
        &signup,
        &signup,
        &[
            ("name", "Alice Buyer"),
            ("email", "alice@tailspin.example"),
            ("password", "correct-horse-battery"),
        ],
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    eventually("active", || async {
        stack
            .store
            .find_subscription(&Marketplace::AZURE, &id)
            .await
            .unwrap()
            .is_some_and(|s| s.status == SubscriptionStatus::Active)
    })
    .await;

    // Who made which call, as the sandbox saw it.
    let log = stack.azure.call_log().await;
    let calls = |pick: &dyn Fn(&str) -> bool| -> Vec<(String, Option<String>)> {
        log.iter()
            .filter(|e| pick(&e.path))
            .map(|e| (e.path.clone(), e.app_id.clone()))
            .collect()
    };
    let authorize = calls(&|p| p.contains("/oauth2/v2.0/authorize"));
    assert!(!authorize.is_empty());
    for (path, _) in &authorize {
        assert!(
            path.starts_with("/organizations/") && path.contains(&landing_app),
            "sign-in at the organisations authority with the landing app: {path}"
        );
    }
    let code_redemption = calls(&|p| p.starts_with("/organizations/oauth2/v2.0/token"));
    assert_eq!(code_redemption.len(), 1, "{code_redemption:?}");
    assert_eq!(code_redemption[0].1.as_deref(), Some(landing_app.as_str()));
    let graph = calls(&|p| p.starts_with("/v1.0/me"));
    assert_eq!(graph.len(), 1);
    assert_eq!(graph[0].1.as_deref(), Some(landing_app.as_str()));
    let api = calls(&|p| p.starts_with("/api/"));
    for (path, app) in &api {
        assert_eq!(app.as_deref(), Some(api_app.as_str()), "{path}");
    }
    for expected in ["/resolve", "/activate"] {
        assert!(
            api.iter().any(|(p, _)| p.contains(expected)),
            "{expected} called: {api:?}"
        );
    }
    let api_tokens = calls(&|p| p.starts_with(&format!("/{}/oauth2", sandbox.publisher_tenant_id)));
    assert!(!api_tokens.is_empty());
    for (path, app) in &api_tokens {
        assert_eq!(app.as_deref(), Some(api_app.as_str()), "{path}");
    }
}

#[tokio::test]
async fn one_single_tenant_app_for_both_refuses_other_tenants_buyers_on_entras_page() {
    // Misconfigured: no landing app, so the single-tenant API app signs buyers in.
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            let sign_in = config.azure.as_mut().unwrap().sign_in.as_mut().unwrap();
            sign_in.client_id = None;
            sign_in.client_secret = None;
        },
    )
    .await;
    let (id, landing) = buy(&stack, ALICE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let landed = client.get(&landing).send().await.unwrap();
    let authorize = landed.headers()["location"].to_str().unwrap().to_owned();
    let page = client.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let page = page.text().await.unwrap();
    assert!(page.contains("AADSTS50194"), "{page}");
    assert!(page.contains("not configured as a multi-tenant application"));
    unclaimed(&stack, &id).await;
    let log = stack.azure.call_log().await;
    assert!(
        !log.iter().any(|e| e.path.contains("/resolve")),
        "the token is never resolved for an unsigned buyer"
    );
}

#[tokio::test]
async fn a_single_tenant_app_at_its_tenant_refuses_another_tenants_buyer() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            let azure = config.azure.as_mut().unwrap();
            let authority = format!("{}/{}/v2.0", azure.authority(), azure.tenant_id);
            let sign_in = azure.sign_in.as_mut().unwrap();
            sign_in.client_id = None;
            sign_in.client_secret = None;
            sign_in.authority = Some(authority);
        },
    )
    .await;
    let (id, landing) = buy(&stack, ALICE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let refused = pick_at_entra(&client, &landing, ("user", ALICE)).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = refused.text().await.unwrap();
    assert!(page.contains("AADSTS50020"), "{page}");
    assert!(page.contains("alice@tailspin.example"), "{page}");
    unclaimed(&stack, &id).await;
}

#[tokio::test]
async fn a_personal_account_is_refused_by_default() {
    let stack = start(|_| {}).await;
    let (id, landing) = buy(&stack, DAVE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let refused = pick_at_entra(&client, &landing, ("user", DAVE)).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("AADSTS50020") && page.contains("live.com"),
        "{page}"
    );
    unclaimed(&stack, &id).await;
}

/// The landing app admits personal accounts at Entra; `allow` is the vendor's choice and
/// `authority` an explicit authority, if any.
async fn personal_capable(allow: bool, authority: Option<&'static str>) -> Stack {
    start_full(
        |_| {},
        |sandbox| {
            if let Some(app) = sandbox.landing_app.as_mut() {
                app.sign_in_audience = SignInAudience::AzureADandPersonalMicrosoftAccount;
            }
        },
        move |config| {
            let azure = config.azure.as_mut().unwrap();
            let authority = authority.map(|a| format!("{}/{a}/v2.0", azure.authority()));
            let sign_in = azure.sign_in.as_mut().unwrap();
            sign_in.allow_personal_accounts = allow;
            sign_in.authority = authority;
        },
    )
    .await
}

#[tokio::test]
async fn a_personal_account_signs_in_where_the_vendor_allows_it() {
    let stack = personal_capable(true, None).await;
    let (_, landing) = buy(&stack, DAVE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let back = land_and_sign_in(&client, &landing, DAVE).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(back.headers()["location"], "/signup");
    let log = stack.azure.call_log().await;
    assert!(
        log.iter()
            .any(|e| e.path.starts_with("/common/oauth2/v2.0/authorize")),
        "allow_personal_accounts signs in at /common"
    );
}

#[tokio::test]
async fn a_personal_account_the_vendor_does_not_allow_gets_our_page() {
    // The app and an explicit /common authority let Dave through Entra; our check refuses him.
    let stack = personal_capable(false, Some("common")).await;
    let (id, landing) = buy(&stack, DAVE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let refused = land_and_sign_in(&client, &landing, DAVE).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let page = refused.text().await.unwrap();
    assert!(page.contains("cannot set up the subscription"), "{page}");
    assert!(page.contains("personal Microsoft accounts"), "{page}");
    unclaimed(&stack, &id).await;
}

#[tokio::test]
async fn a_sign_in_error_from_entra_gets_a_clear_page() {
    let stack = start(|_| {}).await;
    let (id, landing) = buy(&stack, ALICE).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let cancelled = pick_at_entra(&client, &landing, ("cancel", "1")).await;
    assert_eq!(cancelled.status(), StatusCode::FOUND);
    let callback = cancelled.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.contains("error=access_denied"), "{callback}");
    let page = client.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    let page = page.text().await.unwrap();
    assert!(page.contains("You did not finish signing in"), "{page}");
    assert!(page.contains("AADSTS65004"), "Entra's own words: {page}");
    assert!(
        page.contains("Open the set-up link again"),
        "what to do: {page}"
    );
    unclaimed(&stack, &id).await;
}
