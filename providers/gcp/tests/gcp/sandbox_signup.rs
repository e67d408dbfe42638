//! The buyer's sign-up against the Google sandbox: its signed `x-gcp-marketplace-token` and
//! the entitlement it resolves to; forged, altered, expired and misaddressed tokens refused.
//! (Moved here from the stand-in, `signup.rs`, which keeps only what the sandbox cannot do.)

use marketlink_core::{LandingToken, MarketplaceProvider, ProviderError};
use marketlink_sandbox::gcp::{CancellationPolicy, PurchaseRequest};
use serde_json::json;
use time::Duration;

use super::{keys, sandbox::start};

fn token(value: String) -> LandingToken {
    LandingToken { token: value }
}

#[tokio::test]
async fn a_verified_sign_up_resolves_to_the_pending_entitlement() {
    let w = start().await;
    // An earlier order of the same account, aborted before sign-up: not the one resolved.
    let aborted = w.sandbox.purchase(PurchaseRequest::plan("pro")).unwrap();
    w.sandbox
        .cancel(&aborted.entitlement_id, CancellationPolicy::Immediate)
        .unwrap();
    let purchase = w
        .sandbox
        .purchase(PurchaseRequest {
            account_id: Some(aborted.account_id.clone()),
            ..PurchaseRequest::plan("basic")
        })
        .unwrap();
    let resolved = w
        .provider
        .resolve(&token(purchase.sign_up_token.clone()))
        .await
        .unwrap();
    assert_eq!(resolved.subscription.external_id, purchase.entitlement_id);
    assert_eq!(resolved.subscription.customer_id, purchase.account_id);
    assert_eq!(
        resolved.subscription.product_code,
        w.sandbox.config().product_domain
    );
    assert_eq!(resolved.plan_id.unwrap().as_str(), "basic");
    assert_eq!(resolved.aliases[0].value, purchase.order_id);
    // Verified is not approved: approval waits for our tenant (activate).
    let entitlement = w.sandbox.entitlement(&purchase.entitlement_id).unwrap();
    assert_eq!(entitlement.state.name(), "ENTITLEMENT_ACTIVATION_REQUESTED");
}

#[tokio::test]
async fn forged_tampered_and_misaddressed_tokens_are_refused() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let claims = w.sandbox.sign_up_claims(&purchase.account_id);
    let signed =
        |claims: &serde_json::Value| w.sandbox.sign_up_token_with_claims(claims, false).unwrap();
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = "other.example.com".into();
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = "https://attacker.example/keys".into();
    let mut no_sub = claims.clone();
    no_sub["sub"] = "".into();
    let mut long_lived = claims.clone();
    long_lived["exp"] = (claims["iat"].as_i64().unwrap() + 3600).into();
    let good = purchase.sign_up_token.clone();
    let tampered = format!("{}x", &good[..good.len() - 1]);
    for (what, jwt) in [
        (
            "forged under Google's kid",
            w.sandbox.sign_up_token_with_claims(&claims, true).unwrap(),
        ),
        // Signed by this test under a kid the sandbox does not publish.
        ("unknown kid", keys::sign(keys::forger(), "forger", &claims)),
        ("wrong audience", signed(&wrong_aud)),
        ("wrong issuer", signed(&wrong_iss)),
        ("no sub", signed(&no_sub)),
        ("lives an hour", signed(&long_lived)),
        ("tampered", tampered),
        ("not a JWT", "garbage".into()),
    ] {
        let refused = w.provider.resolve(&token(jwt)).await;
        assert!(
            matches!(refused, Err(ProviderError::InvalidToken(_))),
            "{what}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_expired_and_skew_is_allowed() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    w.clock.advance(Duration::seconds(330));
    assert!(
        w.provider
            .resolve(&token(purchase.sign_up_token.clone()))
            .await
            .is_ok(),
        "within the minute of skew"
    );
    w.clock.advance(Duration::seconds(60));
    let refused = w.provider.resolve(&token(purchase.sign_up_token)).await;
    assert!(
        matches!(refused, Err(ProviderError::ExpiredToken(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_for_an_account_google_does_not_know_is_not_valid() {
    let w = start().await;
    let jwt = w.sandbox.sign_up_token("acc-nobody", None).unwrap();
    let refused = w.provider.resolve(&token(jwt)).await;
    assert!(
        matches!(refused, Err(ProviderError::InvalidToken(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn orders_in_the_token_choose_the_entitlement() {
    let w = start().await;
    let first = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let second = w
        .sandbox
        .purchase(PurchaseRequest {
            account_id: Some(first.account_id.clone()),
            ..PurchaseRequest::plan("pro")
        })
        .unwrap();
    for (order, expected) in [
        (&first.order_id, &first.entitlement_id),
        (&second.order_id, &second.entitlement_id),
    ] {
        let google = json!({"orders": [{"orderId": order}]});
        let jwt = w
            .sandbox
            .sign_up_token(&first.account_id, Some(google))
            .unwrap();
        let resolved = w.provider.resolve(&token(jwt)).await.unwrap();
        assert_eq!(&resolved.subscription.external_id, expected);
    }
}
