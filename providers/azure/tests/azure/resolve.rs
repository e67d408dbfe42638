//! Resolve under trouble: retried failures, landing links that arrived un-encoded.

use marketlink_core::{LandingToken, MarketplaceProvider, ProviderError};
use marketlink_sandbox::azure::InjectedError;

use crate::common::H;

const RESOLVE: &str = "/saas/subscriptions/resolve";

async fn resolve_statuses(h: &H) -> Vec<u16> {
    h.sandbox
        .call_log()
        .await
        .iter()
        .filter(|c| c.path.contains(RESOLVE))
        .map(|c| c.status)
        .collect()
}

/// Throttling and a 500 are tried again (Retry-After honoured), and the buyer gets the purchase.
#[tokio::test]
async fn resolve_retries_throttling_and_server_errors() {
    let h = H::start_with(|_| {}, |c| c.initial_backoff_ms = 10).await;
    let (id, token, _) = h.buy("basic", None, 0).await;
    h.sandbox
        .inject_errors(RESOLVE, InjectedError::Throttled(0), 1);
    h.sandbox.inject_errors(RESOLVE, InjectedError::Internal, 1);
    let resolved = h.provider.resolve(&LandingToken { token }).await.unwrap();
    assert_eq!(resolved.subscription.external_id, id.to_string());
    assert_eq!(resolve_statuses(&h).await, vec![429, 500, 200]);
    h.sandbox.shutdown().await;
}

/// A persistent failure ends after `max_attempts`, still retryable for the page to say so.
#[tokio::test]
async fn resolve_gives_up_after_max_attempts() {
    let h = H::start_with(
        |_| {},
        |c| {
            c.max_attempts = 3;
            c.initial_backoff_ms = 10;
        },
    )
    .await;
    let (_, token, _) = h.buy("basic", None, 0).await;
    h.sandbox
        .inject_errors(RESOLVE, InjectedError::Internal, 10);
    let err = h
        .provider
        .resolve(&LandingToken { token })
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(resolve_statuses(&h).await, vec![500, 500, 500]);
    h.sandbox.shutdown().await;
}

/// A call that times out is tried again.
#[tokio::test]
async fn resolve_retries_a_timeout() {
    let h = H::start_with(
        |_| {},
        |c| {
            c.http_timeout_secs = 1;
            c.initial_backoff_ms = 10;
        },
    )
    .await;
    let (id, token, _) = h.buy("basic", None, 0).await;
    // Fetch the API token first: the timeout must hit Resolve itself.
    h.provider.subscription(&id.to_string()).await.unwrap();
    h.sandbox
        .inject_errors(RESOLVE, InjectedError::Slow(2_000), 1);
    let resolved = h.provider.resolve(&LandingToken { token }).await.unwrap();
    assert_eq!(resolved.subscription.external_id, id.to_string());
    h.sandbox.shutdown().await;
}

/// A landing link whose token was not URL-encoded: the query's form decoding turned each `+`
/// into a space. The landing page's token (the provider's `landing_token`) resolves anyway.
#[tokio::test]
async fn a_token_with_a_raw_plus_resolves() {
    let h = H::start().await;
    // Sandbox tokens are standard base64: buy until one holds a `+`.
    let mut bought = None;
    for _ in 0..40 {
        let (id, token, _) = h.buy("basic", None, 0).await;
        if token.contains('+') {
            bought = Some((id, token));
            break;
        }
    }
    let (id, token) = bought.expect("a token with a +");
    let raw_link = format!("token={token}");
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(raw_link.as_bytes())
        .into_owned()
        .collect();
    assert!(fields[0].1.contains(' '), "form decoding made + a space");
    let landing = h.provider.landing_token(&fields).unwrap();
    assert_eq!(landing.token, token);
    let resolved = h.provider.resolve(&landing).await.unwrap();
    assert_eq!(resolved.subscription.external_id, id.to_string());
    // Given straight to resolve with the spaces, too.
    let spaced = LandingToken {
        token: token.replace('+', " "),
    };
    assert!(h.provider.resolve(&spaced).await.is_ok());
    // A token that is really wrong is still refused as such.
    let err = h
        .provider
        .resolve(&LandingToken {
            token: token.replace('+', "-"),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidToken(_)), "{err:?}");
    h.sandbox.shutdown().await;
}
