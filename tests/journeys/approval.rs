//! Microsoft, `on_mismatch = "operator_approval"`: a buyer who signed in as neither the
//! purchaser nor the beneficiary is approved by an operator, and the link the operator passes
//! on lets them set the subscription up (once); a declined request is closed; forged forms
//! and stale links are refused.

use marketlink_core::{Marketplace, SignInMismatch, SubscriptionStatus};
use marketlink_e2e::{
    Stack, azure_land_and_sign_in, browser, browser_trusting, csrf, eventually, operator,
    operator_signs_in, start_full, submit_form,
};
use marketlink_sandbox::azure::PurchaseRequest;
use reqwest::StatusCode;

const PASSWORD: &str = "operator passphrase 42";
const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CAROL: &str = "22222222-bbbb-4ccc-8ddd-000000000003";

async fn stack_with_approval() -> Stack {
    let ops = operator("ops@vendor.example", PASSWORD).await;
    start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = vec![ops];
            let azure = config.azure.as_mut().expect("azure configured");
            azure
                .sign_in
                .as_mut()
                .expect("sign-in configured")
                .on_mismatch = SignInMismatch::OperatorApproval;
        },
    )
    .await
}

/// Alice buys; Carol opens the landing link and signs in as herself: a request.
async fn carol_asks(stack: &Stack) -> String {
    let purchase = stack
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
        .unwrap();
    let carol = browser_trusting(&stack.azure.ca_pem);
    let answer = azure_land_and_sign_in(&carol, &purchase.landing_url, CAROL).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    purchase.subscription_id.to_string()
}

/// The onboarding page, its CSRF token and the one open request's id.
async fn open_request(stack: &Stack, ops: &reqwest::Client) -> (String, String) {
    let page = ops
        .get(format!("{}/admin/onboarding", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(CAROL),
        "the request names who signed in: {page}"
    );
    let requests = stack
        .store
        .list_onboarding_requests("open", 10)
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    (csrf(&page), requests[0].id.to_string())
}

#[tokio::test]
async fn an_approved_stranger_sets_the_subscription_up_with_the_link() {
    let stack = stack_with_approval().await;
    let id = carol_asks(&stack).await;
    let ops = operator_signs_in(&stack, "ops@vendor.example", PASSWORD).await;
    let (token, request) = open_request(&stack, &ops).await;
    let approve = format!("{}/admin/onboarding/{request}/approve", stack.app_url);

    let forged = ops
        .post(&approve)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let approved = ops
        .post(&approve)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::CREATED);
    let page = approved.text().await.unwrap();
    let start = page.find("/onboarding/").expect("the page shows the link");
    let link_path: String = page[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_'))
        .collect();
    // Shown once: the store keeps only its hash, and a second approval is refused.
    let again = ops
        .post(&approve)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let wrong = browser()
        .get(format!("{}/onboarding/not-the-token", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);

    let carol = browser();
    let opened = carol
        .get(format!("{}{link_path}", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()["location"], "/signup");
    let signup = format!("{}/signup", stack.app_url);
    let signed_up = submit_form(
        &carol,
        &signup,
        &signup,
        &[
            ("name", "Carol"),
            ("company", "Fabrikam"),
            ("email", "carol@fabrikam.example"),
            ("password", "correct-horse-battery"),
        ],
    )
    .await;
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
    eventually("the approved buyer's subscription is active", || {
        let store = stack.store.clone();
        let id = id.clone();
        async move {
            store
                .find_subscription(&Marketplace::AZURE, &id)
                .await
                .unwrap()
                .is_some_and(|s| s.tenant_id.is_some() && s.status == SubscriptionStatus::Active)
        }
    })
    .await;

    // Set up once: the link does not bring the purchase to anyone else.
    let late = browser()
        .get(format!("{}{link_path}", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let audit = stack.store.audit_log(None, 20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "onboarding.approve" && e.actor == "admin:ops@vendor.example"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_declined_request_is_closed_with_its_reason() {
    let stack = stack_with_approval().await;
    carol_asks(&stack).await;
    let ops = operator_signs_in(&stack, "ops@vendor.example", PASSWORD).await;
    let (token, request) = open_request(&stack, &ops).await;
    let decline = format!("{}/admin/onboarding/{request}/decline", stack.app_url);
    let no_reason = ops
        .post(&decline)
        .form(&[("csrf", token.as_str()), ("reason", "  ")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let declined = ops
        .post(&decline)
        .form(&[
            ("csrf", token.as_str()),
            ("reason", "not a Tailspin employee"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::SEE_OTHER);
    assert!(
        stack
            .store
            .list_onboarding_requests("open", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let closed = stack
        .store
        .list_onboarding_requests("declined", 10)
        .await
        .unwrap();
    assert_eq!(closed.len(), 1);
    let audit = stack.store.audit_log(None, 20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "onboarding.decline"
                && e.detail["reason"] == "not a Tailspin employee"),
        "{audit:?}"
    );
}
