//! The buyer's sign-up: the `x-gcp-marketplace-token` JWT and what it resolves to.

use marketlink_core::{LandingToken, MarketplaceProvider, ProviderError};
use time::Duration;

use super::{common::Harness, keys};

fn token(value: String) -> LandingToken {
    LandingToken { token: value }
}

#[tokio::test]
async fn a_verified_sign_up_resolves_to_the_pending_entitlement() {
    let h = Harness::start().await;
    h.add_account("acc-1", false);
    h.add_entitlement("ent-old", "acc-1", "ENTITLEMENT_CANCELLED");
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let purchase = h
        .provider
        .resolve(&token(h.sign_up_token("acc-1")))
        .await
        .unwrap();
    assert_eq!(purchase.subscription.external_id, "ent-1");
    assert_eq!(purchase.subscription.customer_id, "acc-1");
    assert_eq!(purchase.subscription.product_code, super::common::SERVICE);
    assert_eq!(purchase.plan_id.unwrap().as_str(), "basic");
    assert_eq!(purchase.aliases[0].value, "order-ent-1");
    // Verified is not approved: approval waits for our tenant (activate).
    assert_eq!(
        h.entitlement_state("ent-1"),
        "ENTITLEMENT_ACTIVATION_REQUESTED"
    );
}

#[tokio::test]
async fn the_token_is_read_from_the_form_field_only() {
    let h = Harness::start().await;
    let fields = vec![("token".to_owned(), "x".to_owned())];
    assert!(h.provider.landing_token(&fields).is_none());
    let fields = vec![("x-gcp-marketplace-token".to_owned(), " jwt ".to_owned())];
    assert_eq!(h.provider.landing_token(&fields).unwrap().token, "jwt");
    assert!(h.provider.rules().landing_post_only);
}

#[tokio::test]
async fn forged_tampered_and_misaddressed_tokens_are_refused() {
    let h = Harness::start().await;
    h.add_account("acc-1", false);
    let claims = h.sign_up_claims("acc-1");
    // Signed by a key Google never published, under Google's kid.
    let forged = keys::sign(keys::forger(), &keys::commerce().kid, &claims);
    // Under a kid Google does not publish.
    let unknown_kid = keys::sign(keys::forger(), "forger", &claims);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = "other.example.com".into();
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = "https://attacker.example/keys".into();
    let mut no_sub = claims.clone();
    no_sub["sub"] = "".into();
    let mut long_lived = claims.clone();
    long_lived["exp"] = (h.now() + 3600).into();
    let good = h.sign_up_token("acc-1");
    let tampered = format!("{}x", &good[..good.len() - 1]);
    for (what, jwt) in [
        ("forged", forged),
        ("unknown kid", unknown_kid),
        (
            "wrong audience",
            keys::sign(keys::commerce(), &keys::commerce().kid, &wrong_aud),
        ),
        (
            "wrong issuer",
            keys::sign(keys::commerce(), &keys::commerce().kid, &wrong_iss),
        ),
        (
            "no sub",
            keys::sign(keys::commerce(), &keys::commerce().kid, &no_sub),
        ),
        (
            "lives an hour",
            keys::sign(keys::commerce(), &keys::commerce().kid, &long_lived),
        ),
        ("tampered", tampered),
        ("not a JWT", "garbage".into()),
    ] {
        let refused = h.provider.resolve(&token(jwt)).await;
        assert!(
            matches!(refused, Err(ProviderError::InvalidToken(_))),
            "{what}: {refused:?}"
        );
    }
    // None of them reached Procurement.
    assert!(h.world.lock().unwrap().calls.is_empty());
}

#[tokio::test]
async fn an_expired_token_is_expired_and_skew_is_allowed() {
    let h = Harness::start().await;
    h.add_account("acc-1", false);
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let jwt = h.sign_up_token("acc-1");
    h.clock.advance(Duration::seconds(330));
    assert!(
        h.provider.resolve(&token(jwt.clone())).await.is_ok(),
        "within the minute of skew"
    );
    h.clock.advance(Duration::seconds(60));
    let refused = h.provider.resolve(&token(jwt)).await;
    assert!(
        matches!(refused, Err(ProviderError::ExpiredToken(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_unknown_account_or_no_entitlement_yet() {
    let h = Harness::start().await;
    let refused = h.provider.resolve(&token(h.sign_up_token("acc-x"))).await;
    assert!(
        matches!(refused, Err(ProviderError::InvalidToken(_))),
        "{refused:?}"
    );
    h.add_account("acc-x", false);
    let later = h.provider.resolve(&token(h.sign_up_token("acc-x"))).await;
    assert!(
        later.as_ref().is_err_and(ProviderError::is_retryable),
        "{later:?}"
    );
}

#[tokio::test]
async fn orders_in_the_token_choose_the_entitlement() {
    let h = Harness::start().await;
    h.add_account("acc-1", false);
    h.add_entitlement("ent-a", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    h.add_entitlement("ent-b", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let mut claims = h.sign_up_claims("acc-1");
    claims["google"]["orders"] = serde_json::json!([{"orderId": "order-ent-b"}]);
    let jwt = keys::sign(keys::commerce(), &keys::commerce().kid, &claims);
    let purchase = h.provider.resolve(&token(jwt)).await.unwrap();
    assert_eq!(purchase.subscription.external_id, "ent-b");
}
