//! Set-up links that no longer work, and a set-up page opened without one: each page says
//! what happened and what to do.

use marketlink_e2e::{Stack, start_with};
use marketlink_sandbox::{aws::OfferKind, azure::PurchaseRequest};

use crate::{
    browser::Browser,
    checks::shot,
    fixtures::{ALICE, CLASSIC},
};

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

    invalid_aws_token(&browser, &stack).await;
    expired_tokens_on_both_marketplaces(&browser, &stack).await;

    browser.goto(&format!("{}/signup", stack.app_url)).await;
    let nothing = browser
        .wait_for_text("There is no subscription waiting to be set up", false)
        .await;
    assert!(nothing.contains("Sign in to your account"), "{nothing}");
    shot(&browser, "error-no-pending-purchase").await;
}

/// A token AWS never issued.
async fn invalid_aws_token(browser: &Browser, stack: &Stack) {
    browser
        .post_form(
            &format!("{}/aws/landing", stack.app_url),
            &[("x-amzn-marketplace-token", "not-a-real-token")],
        )
        .await;
    let invalid = browser
        .wait_for_text("This subscription link is not valid", false)
        .await;
    assert!(
        invalid.contains("What you can do") && invalid.contains("Set up your account"),
        "{invalid}"
    );
    shot(browser, "error-aws-invalid-token").await;
}

/// A purchase on each marketplace whose landing token (valid for a second) is used too late.
async fn expired_tokens_on_both_marketplaces(browser: &Browser, stack: &Stack) {
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

    browser
        .post_form(
            &format!("{}/aws/landing", stack.app_url),
            &[(
                "x-amzn-marketplace-token",
                purchase.registration_token.as_str(),
            )],
        )
        .await;
    let expired = browser
        .wait_for_text("This subscription link has expired", false)
        .await;
    assert!(expired.contains("Return to AWS Marketplace"), "{expired}");
    shot(browser, "error-aws-expired-token").await;

    browser.goto(&azure.landing_url).await;
    browser
        .submit(&format!(
            "//form[.//input[@name='user'][@value='{ALICE}']]//button"
        ))
        .await;
    // Microsoft answers an expired token like an unknown one; the page covers both.
    let expired = browser.wait_for_text("Configure account now", false).await;
    assert!(expired.contains("expired link is refused"), "{expired}");
    shot(browser, "error-azure-expired-token").await;
}
