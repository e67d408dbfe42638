//! Tokens, resolve, activate, reads and vendor-side changes with operation polling.

use marketlink_azure::{AzureProvider, OperationStatus};
use marketlink_core::{
    ChangeOutcome, EntitlementValue, LandingToken, Marketplace, MarketplaceProvider, ProviderError,
};
use std::sync::Arc;

use crate::common::{H, plan, provider_config};

fn landing(token: &str) -> LandingToken {
    LandingToken {
        token: token.into(),
    }
}

#[tokio::test]
async fn token_is_cached_and_refreshed_before_expiry() {
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;
    for _ in 0..3 {
        h.provider.subscription(&sub.external_id).await.unwrap();
    }
    h.provider.available_plans(&sub).await.unwrap();
    assert_eq!(h.token_calls().await, 1, "one token for every call");

    // Sandbox tokens live 3600 s; we refresh 300 s before expiry.
    h.clock.advance(time::Duration::seconds(3200));
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 1, "still fresh at 3200 s");
    h.clock.advance(time::Duration::seconds(200));
    h.provider.subscription(&sub.external_id).await.unwrap();
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 2, "refreshed once inside the margin");
    // Well past expiry: a fresh token, never a 401 to the caller.
    h.clock.advance(time::Duration::hours(5));
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 3);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn resolve_and_activate() {
    let h = H::start().await;
    let (id, token, landing_url) = h.buy("pro", Some(5), 0).await;
    let alice = h.user(0);

    // The token as the landing page's query string carries it, encoded once more.
    let encoded = url::Url::parse(&landing_url)
        .unwrap()
        .query()
        .unwrap()
        .strip_prefix("token=")
        .unwrap()
        .to_owned();
    assert!(encoded.contains('%'), "{encoded}");
    let resolved = h.provider.resolve(&landing(&encoded)).await.unwrap();
    let again = h.provider.resolve(&landing(&token)).await.unwrap();
    assert_eq!(resolved, again);

    let r = &resolved.subscription;
    assert_eq!(r.marketplace, Marketplace::AZURE);
    assert_eq!(r.external_id, id.to_string());
    assert_eq!(r.product_code, "contoso-analytics");
    assert_eq!(r.customer_id, alice.tenant_id);
    assert_eq!(
        r.customer_account_id.as_deref(),
        Some(alice.tenant_id.as_str())
    );
    assert_eq!(r.license_arn, None);
    assert_eq!(resolved.plan_id, Some(plan("pro")));
    assert_eq!(resolved.quantity, Some(5));
    assert!(!resolved.free_trial);
    assert_eq!(
        resolved.display_name.as_deref(),
        Some("Contoso Analytics for Alice Buyer")
    );
    assert_eq!(resolved.buyer_email, alice.mail);
    let term = resolved.term.clone().unwrap();
    assert_eq!(term.unit.as_deref(), Some("P1M"));
    assert_eq!(term.end, None, "no dates before activation");

    assert_eq!(
        h.sandbox_sub(&r.external_id).await["saasSubscriptionStatus"],
        "PendingFulfillmentStart"
    );
    h.provider
        .activate(r, resolved.plan_id.as_ref(), resolved.quantity)
        .await
        .unwrap();
    assert_eq!(
        h.sandbox_sub(&r.external_id).await["saasSubscriptionStatus"],
        "Subscribed"
    );
    // A resend (outbox after a crash) is not an error.
    h.provider
        .activate(r, resolved.plan_id.as_ref(), resolved.quantity)
        .await
        .unwrap();
    // Activating with the wrong plan is refused for good.
    let (_, token2, _) = h.buy("basic", None, 1).await;
    let other = h.provider.resolve(&landing(&token2)).await.unwrap();
    let err = h
        .provider
        .activate(&other.subscription, Some(&plan("pro")), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    // Without a plan, the subscription's own plan is used.
    h.provider
        .activate(&other.subscription, None, None)
        .await
        .unwrap();
    // Bob has no mail: the beneficiary email is his UPN.
    assert_eq!(other.buyer_email, h.user(1).user_principal_name);

    // Resolving again after activation gives the same ExternalRef and the term dates.
    let after = h.provider.resolve(&landing(&token)).await.unwrap();
    assert_eq!(after.subscription, resolved.subscription);
    assert!(after.term.unwrap().end.is_some());
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn bad_expired_tokens_and_bad_credentials() {
    let h = H::start().await;
    let err = h
        .provider
        .resolve(&landing("bm90LWEtdG9rZW4="))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidToken(_)), "{err:?}");
    let err = h.provider.resolve(&landing("  ")).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidToken(_)), "{err:?}");

    let (_, token, _) = h.buy("basic", None, 0).await;
    h.clock
        .advance(time::Duration::hours(24) + time::Duration::seconds(1));
    let err = h.provider.resolve(&landing(&token)).await.unwrap_err();
    // Microsoft (and the sandbox) do not say which: "invalid or expired".
    assert!(
        matches!(
            err,
            ProviderError::InvalidToken(_) | ProviderError::ExpiredToken(_)
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    // Wrong secret: the token endpoint refuses us, an operator must act.
    let mut config = provider_config(&h.sandbox);
    config.client_secret = "wrong".into();
    let bad = AzureProvider::new(config, Arc::new(h.clock.clone())).unwrap();
    let err = bad.resolve(&landing(&token)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Configuration(_)), "{err:?}");
    // Another publisher's valid credentials: 403 from the API.
    let other = h.sandbox.config().other_apps[0].clone();
    let mut config = provider_config(&h.sandbox);
    config.tenant_id = other.tenant_id.clone();
    config.client_id = other.client_id.clone();
    config.client_secret = other.client_secret.expose().into();
    let foreign = AzureProvider::new(config, Arc::new(h.clock.clone())).unwrap();
    let err = foreign.resolve(&landing(&token)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Configuration(_)), "{err:?}");
    // A sandbox that is down: retryable.
    let mut config = provider_config(&h.sandbox);
    config.marketplace_api_base = "https://127.0.0.1:1/api".into();
    let down = AzureProvider::new(config, Arc::new(h.clock.clone())).unwrap();
    let err = down.resolve(&landing(&token)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn reads_plans_entitlements_and_lists() {
    let h = H::start().await;
    let sub = h.subscribed("pro", Some(4)).await;
    let flat = h.subscribed("basic", None).await;

    let s = h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(s.external_ref(), sub);
    assert_eq!(s.plan_id.as_deref(), Some("pro"));
    assert_eq!(s.quantity, Some(4));
    assert_eq!(s.status(), marketlink_azure::SaasStatus::Subscribed);
    assert!(
        s.allowed_customer_operations
            .contains(&"Update".to_string())
    );

    let plans = h.provider.available_plans(&sub).await.unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p.plan_id.as_str()).collect();
    assert_eq!(ids, ["basic", "pro"]);
    let pro = &plans[1];
    assert!(pro.is_price_per_seat);
    assert_eq!((pro.min_quantity, pro.max_quantity), (Some(1), Some(500)));
    assert_eq!(pro.plan_components.metering_dimensions[0].id, "api_calls");

    let term_end = s.term().unwrap().end.unwrap();
    let ents = h.provider.entitlements(&sub).await.unwrap();
    assert_eq!(ents.len(), 2);
    assert_eq!(ents[0].dimension, "plan");
    assert_eq!(ents[0].value, EntitlementValue::String("pro".into()));
    assert_eq!(ents[1].dimension, "quantity");
    assert_eq!(ents[1].value, EntitlementValue::Integer(4));
    assert!(ents.iter().all(|e| e.expires_at == Some(term_end)));
    let ents = h.provider.entitlements(&flat).await.unwrap();
    assert_eq!(ents.len(), 1, "no quantity on a flat plan");

    let all = h.provider.list_subscriptions().await.unwrap();
    assert_eq!(all.len(), 2);
    let err = h
        .provider
        .subscription("00000000-0000-4000-8000-000000000000")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err:?}");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn list_follows_next_link_pages() {
    let h = H::start().await;
    for i in 0..105 {
        h.buy("basic", None, i % 3).await;
    }
    let all = h.provider.list_subscriptions().await.unwrap();
    assert_eq!(all.len(), 105);
    assert_eq!(h.calls_to("/api/saas/subscriptions").await, 2, "two pages");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn vendor_changes_plan_quantity_and_cancels() {
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;

    let ChangeOutcome::InProgress { operation_id } =
        h.provider.change_plan(&sub, &plan("pro")).await.unwrap()
    else {
        panic!("expected an operation");
    };
    let status = h
        .provider
        .wait_for_operation(&sub, &operation_id, None)
        .await
        .unwrap();
    assert_eq!(status, OperationStatus::Succeeded);
    let s = h.sandbox_sub(&sub.external_id).await;
    assert_eq!(
        (s["planId"].as_str(), s["quantity"].as_i64()),
        (Some("pro"), Some(1))
    );

    let ChangeOutcome::InProgress { operation_id } =
        h.provider.change_quantity(&sub, 7).await.unwrap()
    else {
        panic!("expected an operation");
    };
    assert!(
        h.provider
            .wait_for_operation(&sub, &operation_id, Some(std::time::Duration::from_secs(5)))
            .await
            .unwrap()
            .is_terminal()
    );
    assert_eq!(h.sandbox_sub(&sub.external_id).await["quantity"], 7);

    // Same quantity again: refused for good.
    let err = h.provider.change_quantity(&sub, 7).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    // Out of the plan's range.
    let err = h.provider.change_quantity(&sub, 501).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");

    // A marketplace-side change in progress: our PATCH conflicts.
    let op = h
        .sandbox
        .marketplace_action(
            uuid::Uuid::parse_str(&sub.external_id).unwrap(),
            marketlink_sandbox::azure::MarketplaceAction::ChangeQuantity(9),
        )
        .await
        .unwrap();
    let err = h
        .provider
        .change_plan(&sub, &plan("basic"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "conflict"),
        "{err:?}"
    );
    let pending = h.provider.pending_operations(&sub).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, op.to_string());
    h.provider
        .respond_to_change(&sub, &op.to_string(), true, None)
        .await
        .unwrap();

    let ChangeOutcome::InProgress { operation_id } = h.provider.cancel(&sub).await.unwrap() else {
        panic!("expected an operation");
    };
    assert_eq!(
        h.provider
            .wait_for_operation(&sub, &operation_id, None)
            .await
            .unwrap(),
        OperationStatus::Succeeded
    );
    assert_eq!(
        h.sandbox_sub(&sub.external_id).await["saasSubscriptionStatus"],
        "Unsubscribed"
    );
    let err = h.provider.cancel(&sub).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn capabilities_and_endpoints() {
    let h = H::start().await;
    let caps = h.provider.capabilities();
    assert!(caps.vendor_activates && caps.vendor_changes_plan && caps.vendor_cancels);
    assert_eq!(h.provider.marketplace(), Marketplace::AZURE);
    let endpoints = h.provider.inbound_endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        (endpoints[0].path, endpoints[0].channel),
        ("/azure/webhook", "webhook")
    );
    assert!(
        !format!("{:?}", h.provider).contains(h.sandbox.config().publisher_app_secret.expose())
    );
    h.sandbox.shutdown().await;
}
