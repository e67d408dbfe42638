//! API tokens the marketplace refuses: replaced once, then reported as configuration.

use marketlink_azure::AzureProvider;
use marketlink_core::{Clock, ManualClock, ProviderError, SystemClock};
use std::sync::Arc;

use crate::common::{H, provider_config};

/// Statuses the sandbox answered on paths containing `fragment`, in order.
async fn statuses(h: &H, fragment: &str) -> Vec<u16> {
    h.sandbox
        .call_log()
        .await
        .iter()
        .filter(|c| c.path.contains(fragment))
        .map(|c| c.status)
        .collect()
}

/// Microsoft's clock passes the token's `exp` while our cache still holds it (our clock behind,
/// or the token revoked): the 403 drops the token, a new one is fetched, the call succeeds.
#[tokio::test]
async fn a_token_expired_on_microsofts_side_is_replaced_and_the_call_recovers() {
    let microsoft = ManualClock::new(SystemClock.now());
    let h = H::start_clocked(|_| {}, |_| {}, Some(microsoft.clone())).await;
    let sub = h.subscribed("basic", None).await;
    assert_eq!(h.token_calls().await, 1);

    // Two hours later for Microsoft (tokens live one), no time at all for us.
    microsoft.advance(time::Duration::hours(2));
    let read = h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(read.id.to_ascii_lowercase(), sub.external_id);
    assert_eq!(h.token_calls().await, 2, "one new token");
    let path = format!("/api/saas/subscriptions/{}?", sub.external_id);
    assert_eq!(statuses(&h, &path).await, vec![403, 200]);

    // The new token is cached: the next calls use it.
    h.provider.available_plans(&sub).await.unwrap();
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 2);
    h.sandbox.shutdown().await;
}

/// A fresh token refused too is the app's configuration: one retry, then `Configuration`
/// naming the credentials and permissions.
#[tokio::test]
async fn a_fresh_token_refused_again_is_a_configuration_error() {
    let h = H::start().await;
    let (id, _, _) = h.buy("basic", None, 0).await;
    let other = h.sandbox.config().other_apps[0].clone();
    let mut config = provider_config(&h.sandbox);
    config.tenant_id = other.tenant_id.clone();
    config.client_id = other.client_id.clone();
    config.client_secret = other.client_secret.expose().into();
    let foreign = AzureProvider::new(config, Arc::new(h.clock.clone())).unwrap();

    let err = foreign.subscription(&id.to_string()).await.unwrap_err();
    let ProviderError::Configuration(message) = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("HTTP 403"), "{message}");
    assert!(
        message.contains("credentials or permissions are wrong"),
        "{message}"
    );
    // Microsoft's own words come through.
    assert!(
        message.contains("authorization token is invalid"),
        "{message}"
    );
    assert_eq!(h.token_calls().await, 2, "the refused token and one more");
    assert_eq!(
        statuses(&h, &format!("/api/saas/subscriptions/{id}?")).await,
        vec![403, 403],
        "one retry, not more"
    );
    h.sandbox.shutdown().await;
}
