//! The buyer's sign-up against the stand-in, for what the Google sandbox cannot show: the
//! form field (no Google at all), refusals that make no Procurement call (the stand-in logs
//! calls), and an account with no entitlement yet. The rest is in `sandbox_signup.rs`.

use marketlink_core::{LandingToken, MarketplaceProvider, ProviderError};

use super::{common::Harness, keys};

fn token(value: String) -> LandingToken {
    LandingToken { token: value }
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

/// The stand-in logs every call, which the sandbox does not: a refused token costs no
/// Procurement call. (Each kind of refusal is in `sandbox_signup.rs`.)
#[tokio::test]
async fn refused_tokens_reach_no_procurement_call() {
    let h = Harness::start().await;
    h.add_account("acc-1", false);
    let claims = h.sign_up_claims("acc-1");
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = "other.example.com".into();
    for jwt in [
        keys::sign(keys::forger(), &keys::commerce().kid, &claims),
        keys::sign(keys::commerce(), &keys::commerce().kid, &wrong_aud),
    ] {
        let refused = h.provider.resolve(&token(jwt)).await;
        assert!(
            matches!(refused, Err(ProviderError::InvalidToken(_))),
            "{refused:?}"
        );
    }
    assert!(h.world.lock().unwrap().calls.is_empty());
}

/// An account without entitlements cannot be made in the sandbox (a purchase creates both).
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
