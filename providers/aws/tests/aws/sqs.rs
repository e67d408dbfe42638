//! pull / ack / extend_visibility against the sandbox's SQS.

use marketlink_core::{MarketplaceProvider, ProviderError};
use marketlink_sandbox::aws::{InjectedError, OfferKind, SubscriptionAction};
use time::Duration;

use crate::common::*;

#[tokio::test]
async fn pull_then_ack_deletes_the_message() {
    let h = start().await;
    let c =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    let e =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&c.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.sb.send_subscription_event(&e.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    // One SNS envelope + two EventBridge events, from two queues; `max` is honoured.
    let first = h.provider.pull(2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = h.provider.pull(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    for m in first.iter().chain(&rest) {
        assert_eq!(m.message.channel, "sqs");
        assert!(m.message.headers.is_empty());
        let (queue, handle) = m.receipt.split_once('|').unwrap();
        assert!(h.config.sqs_queue_urls.contains(&queue.to_owned()));
        assert!(!handle.is_empty());
    }
    // In flight: invisible.
    assert!(h.provider.pull(10).await.unwrap().is_empty());
    // Ack two; keep the third in flight longer; the visibility timeout passes.
    h.provider.ack(&first[0].receipt).await.unwrap();
    h.provider.ack(&first[1].receipt).await.unwrap();
    h.provider
        .extend_visibility(&rest[0].receipt, 600)
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(5));
    assert!(h.provider.pull(10).await.unwrap().is_empty());
    h.clock.advance(Duration::minutes(6));
    // The un-acked message comes back; the acked ones do not.
    let again = h.provider.pull(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.body, rest[0].message.body);
    h.provider.ack(&again[0].receipt).await.unwrap();
    h.clock.advance(Duration::minutes(5));
    assert!(h.provider.pull(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_receipts_and_sqs_failures() {
    let h = start().await;
    assert!(matches!(
        h.provider.ack("no-separator").await,
        Err(ProviderError::Rejected { .. })
    ));
    let err = h
        .provider
        .ack(&format!("{}|garbage", h.sb.sns_queue_url()))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    h.sb.inject_errors("ReceiveMessage", InjectedError::Throttling, 10);
    let err = h.provider.pull(10).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}
