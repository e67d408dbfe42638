//! Usage across a subscription's life: hours sent after a renewal's new licence name it, and a
//! buyer who subscribes again reports usage again with zero records only from then on.

use marketlink_core::{
    EventKind, Lifecycle, Marketplace, MarketplaceEvent, Subscription, SubscriptionStatus,
};
use marketlink_engine::{ApplyOutcome, Engine, apply_event, metering::IngestErrorKind};
use time::{Duration, OffsetDateTime};

use crate::{
    fake::Counting,
    harness::{T0, harness, input, subscription},
};

async fn apply(
    engine: &Engine,
    sub: &Subscription,
    occurred_at: OffsetDateTime,
    kind: EventKind,
) -> ApplyOutcome {
    let event = MarketplaceEvent {
        subscription: sub.external.clone(),
        occurred_at,
        kind,
        free_trial: None,
        aliases: Vec::new(),
    };
    apply_event(engine, &event, "test").await.unwrap()
}

fn lifecycle(event: Lifecycle) -> EventKind {
    EventKind::Lifecycle {
        event,
        reason: None,
    }
}

/// The usage flush reads the subscription's licence when it sends an hour, not when the usage
/// arrived: after a renewal moved it to a new LicenseArn, every hour sent names the new one.
#[tokio::test]
async fn hours_sent_after_a_relicensing_name_the_new_licence() {
    let provider = Counting::new(Marketplace::AWS);
    let start = T0 + Duration::hours(1) + Duration::minutes(10);
    let h = harness(provider.clone(), start).await;
    let engine = &h.engine;
    let sub = subscription(&engine.store, Marketplace::AWS, "c1").await;
    let relicensed = |arn: &str| EventKind::Relicensed {
        license_arn: arn.into(),
    };
    assert_eq!(
        apply(engine, &sub, T0, relicensed("arn-1")).await,
        ApplyOutcome::Applied
    );
    engine
        .ingest_usage(
            &[input(sub.id, "api_calls", "5", T0 + Duration::minutes(5))],
            None,
        )
        .await
        .unwrap();
    // Usage of the next hour arrives under the old licence...
    let next = T0 + Duration::hours(1);
    engine
        .ingest_usage(
            &[input(sub.id, "api_calls", "7", next + Duration::minutes(1))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(engine.flush_usage().await.unwrap().delivered, 1);
    // ...and the renewal moves the subscription before that hour is sent.
    assert_eq!(
        apply(
            engine,
            &sub,
            next + Duration::minutes(2),
            relicensed("arn-2")
        )
        .await,
        ApplyOutcome::Applied
    );
    assert_eq!(
        apply(
            engine,
            &sub,
            next + Duration::minutes(2),
            relicensed("arn-2")
        )
        .await,
        ApplyOutcome::Unchanged
    );
    h.clock.advance(Duration::hours(2));
    engine.flush_usage().await.unwrap();
    let sent = provider.sent();
    let licences: Vec<(OffsetDateTime, Option<&str>)> = sent
        .iter()
        .map(|r| (r.hour, r.subscription.license_arn.as_deref()))
        .collect();
    assert_eq!(sent[0].hour, T0);
    assert_eq!(sent[0].subscription.license_arn.as_deref(), Some("arn-1"));
    assert!(sent.len() > 1, "{licences:?}");
    for record in &sent[1..] {
        assert_eq!(
            record.subscription.license_arn.as_deref(),
            Some("arn-2"),
            "{licences:?}"
        );
    }
    assert!(
        sent.iter()
            .any(|r| r.hour == next && r.quantity.to_string() == "7")
    );
}

/// Usage is refused while cancelled and accepted again once the buyer subscribed again; the
/// hourly zero records resume from the re-subscription, not for the hours it was cancelled
/// (AWS answers CustomerNotSubscribed for those).
#[tokio::test]
async fn a_buyer_who_subscribes_again_reports_usage_again_without_zero_hours_for_the_gap() {
    let provider = Counting::new(Marketplace::AWS);
    let h = harness(provider.clone(), T0 + Duration::minutes(30)).await;
    let engine = &h.engine;
    let sub = subscription(&engine.store, Marketplace::AWS, "c1").await;
    let usage = |at: OffsetDateTime| [input(sub.id, "api_calls", "1", at)];
    engine
        .ingest_usage(&usage(T0 + Duration::minutes(10)), None)
        .await
        .unwrap();
    h.clock.set(T0 + Duration::hours(1) + Duration::minutes(10));
    engine.flush_usage().await.unwrap();

    let cancelled_at = T0 + Duration::hours(1) + Duration::minutes(15);
    h.clock.set(cancelled_at + Duration::minutes(5));
    apply(engine, &sub, cancelled_at, lifecycle(Lifecycle::Cancel)).await;
    let refused = engine
        .ingest_usage(&usage(cancelled_at + Duration::minutes(6)), None)
        .await
        .unwrap_err();
    assert!(matches!(
        refused.kind,
        IngestErrorKind::SubscriptionNotActive(SubscriptionStatus::Cancelled)
    ));
    h.clock.set(T0 + Duration::hours(6) + Duration::minutes(10));
    engine.flush_usage().await.unwrap();

    let back_at = T0 + Duration::hours(6) + Duration::minutes(15);
    h.clock.set(back_at + Duration::minutes(5));
    let outcome = apply(engine, &sub, back_at, lifecycle(Lifecycle::Activate)).await;
    assert_eq!(
        outcome,
        ApplyOutcome::Resubscribed {
            from: SubscriptionStatus::Cancelled
        }
    );
    engine
        .ingest_usage(&usage(back_at + Duration::minutes(6)), None)
        .await
        .unwrap();
    h.clock.set(T0 + Duration::hours(8) + Duration::minutes(10));
    let run = engine.flush_usage().await.unwrap();
    assert!(run.zero_created > 0, "{run:?}");
    let hours: Vec<OffsetDateTime> = provider.sent().iter().map(|r| r.hour).collect();
    let resumed = T0 + Duration::hours(6);
    assert!(
        hours.iter().all(|h| *h == T0 || *h >= resumed),
        "nothing for the hours it was cancelled: {hours:?}"
    );
    assert!(
        provider
            .sent()
            .iter()
            .any(|r| r.hour == resumed && r.quantity.to_string() == "1")
    );
}
