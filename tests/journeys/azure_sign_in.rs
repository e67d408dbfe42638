//! Microsoft: the landing sign-in is bound to the purchase. A buyer who signs in as neither the
//! purchaser nor the beneficiary is refused (or, by the vendor's choice, becomes an onboarding
//! request); a leaked landing link alone claims nothing.

use marketlink_core::{Marketplace, SignInMismatch};
use marketlink_e2e::{
    Stack, azure_land_and_sign_in as land_and_sign_in, browser_trusting, start, start_full,
};
use marketlink_sandbox::azure::PurchaseRequest;
use reqwest::StatusCode;

const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CAROL: &str = "22222222-bbbb-4ccc-8ddd-000000000003";

/// Alice buys; returns the subscription id and its landing link.
async fn alice_buys(stack: &Stack) -> (String, String) {
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
    (purchase.subscription_id.to_string(), purchase.landing_url)
}

/// What the browser may do next: no purchase waits for it on the sign-up page.
async fn signup_holds_no_purchase(stack: &Stack, client: &reqwest::Client) {
    let signup = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap();
    let body = signup.text().await.unwrap();
    assert!(
        !body.contains("contoso-analytics") && !body.contains("basic"),
        "no purchase waits for the refused buyer: {body}"
    );
}

#[tokio::test]
async fn a_stranger_with_the_landing_link_is_refused_and_the_purchaser_succeeds() {
    let stack = start(|_| {}).await;
    let (id, landing) = alice_buys(&stack).await;

    let carol = browser_trusting(&stack.azure.ca_pem);
    let refused = land_and_sign_in(&carol, &landing, CAROL).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let page = refused.text().await.unwrap();
    assert!(page.contains("bought by someone else"), "{page}");
    assert!(
        page.contains("alice@tailspin.example"),
        "the page says who may set it up: {page}"
    );
    signup_holds_no_purchase(&stack, &carol).await;
    let stored = stack
        .store
        .find_subscription(&Marketplace::AZURE, &id)
        .await
        .unwrap();
    assert!(stored.is_none_or(|s| s.tenant_id.is_none()), "not claimed");

    // The purchaser with the same link goes on to sign-up.
    let alice = browser_trusting(&stack.azure.ca_pem);
    let back = land_and_sign_in(&alice, &landing, ALICE).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(back.headers()["location"], "/signup");
}

#[tokio::test]
async fn with_operator_approval_a_stranger_becomes_a_request() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            let azure = config.azure.as_mut().expect("azure configured");
            azure
                .sign_in
                .as_mut()
                .expect("sign-in configured")
                .on_mismatch = SignInMismatch::OperatorApproval;
        },
    )
    .await;
    let (id, landing) = alice_buys(&stack).await;
    let carol = browser_trusting(&stack.azure.ca_pem);
    let answer = land_and_sign_in(&carol, &landing, CAROL).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    assert!(answer.text().await.unwrap().contains("sent for approval"));
    signup_holds_no_purchase(&stack, &carol).await;

    let requests = stack
        .store
        .list_onboarding_requests("open", 10)
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.purchase.subscription.external_id, id);
    let message = request.message.as_deref().unwrap_or_default();
    assert!(message.contains(CAROL), "{message}");
}
