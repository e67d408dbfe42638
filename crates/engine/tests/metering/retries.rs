//! Failed sends: retries, dead letters, and an operator sending a dead hour again.

use std::time::Duration as StdDuration;

use marketlink_core::{Clock, Marketplace, ProviderError, UsageOutcome};
use marketlink_store::UsageHourState;
use time::Duration;
use uuid::Uuid;

use crate::{
    fake::Counting,
    harness::{T0, harness, input, subscription},
};

#[tokio::test]
async fn retries_honour_retry_after_then_dead_letter() {
    let provider = Counting::new(Marketplace::AWS);
    let now = T0 + Duration::hours(2);
    let h = harness(provider.clone(), now).await;
    let sub = subscription(&h.engine.store, Marketplace::AWS, "c1").await;
    h.engine
        .ingest_usage(&[input(sub.id, "api_calls", "3", T0)], None)
        .await
        .unwrap();
    provider
        .failures
        .lock()
        .unwrap()
        .push_back(ProviderError::Retryable {
            message: "throttled".into(),
            retry_after: Some(StdDuration::from_secs(120)),
        });
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.retried, 1);
    let rows = h.engine.store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(rows[0].state, UsageHourState::Sending);
    assert!(rows[0].next_attempt_at >= now + Duration::seconds(120));
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("temporary marketplace failure: throttled")
    );
    // Not before Retry-After.
    h.clock.advance(Duration::seconds(60));
    assert_eq!(h.engine.flush_usage().await.unwrap().claimed, 0);
    h.clock.advance(Duration::seconds(61));
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.delivered, 1);
    assert_eq!(provider.sent().len(), 1);

    // Per-record outcomes: retry with backoff until attempts run out, then the dead letter;
    // refusals and mismatches are settled at once.
    {
        let mut outcomes = provider.outcomes.lock().unwrap();
        outcomes.insert(
            "api_calls".into(),
            UsageOutcome::Retry {
                detail: "unprocessed".into(),
            },
        );
        outcomes.insert(
            "storage_gb".into(),
            UsageOutcome::QuantityMismatch {
                detail: "DuplicateRecord".into(),
            },
        );
    }
    let at = T0 + Duration::hours(1);
    h.engine
        .ingest_usage(
            &[
                input(sub.id, "api_calls", "1", at),
                input(sub.id, "storage_gb", "1", at),
            ],
            None,
        )
        .await
        .unwrap();
    h.clock.advance(Duration::hours(1));
    for attempt in 1..=5 {
        let run = h.engine.flush_usage().await.unwrap();
        assert_eq!(
            run.claimed,
            if attempt == 1 { 2 } else { 1 },
            "attempt {attempt}"
        );
        let rows = h.engine.store.usage_hours_of(sub.id).await.unwrap();
        let row = rows
            .iter()
            .find(|r| r.hour == at && r.dimension == "api_calls")
            .unwrap();
        if attempt < 5 {
            assert_eq!(row.state, UsageHourState::Sending);
            // Exponential backoff with jitter: within [base·2^(n-1)/2, base·2^(n-1)].
            let ceiling = Duration::seconds(10) * 2_i32.pow(attempt - 1);
            let delay = row.next_attempt_at - h.clock.now();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {attempt}: {delay}"
            );
            h.clock.advance(delay);
        } else {
            assert_eq!(row.state, UsageHourState::Dead);
            assert!(
                row.last_error
                    .as_deref()
                    .unwrap()
                    .contains("gave up after 5 attempts")
            );
        }
    }
    let mismatched = h
        .engine
        .store
        .usage_hours_in(UsageHourState::Mismatch, 10)
        .await
        .unwrap();
    assert_eq!(mismatched.len(), 1);
    assert_eq!(mismatched[0].last_error.as_deref(), Some("DuplicateRecord"));
    // Every attempt resent the identical record.
    let resent: Vec<_> = provider
        .sent()
        .into_iter()
        .filter(|r| r.hour == at && r.dimension == "api_calls")
        .collect();
    assert_eq!(resent.len(), 5);
    assert!(resent.iter().all(|r| r == &resent[0]));

    // A refusal is a dead letter with the marketplace's reason.
    provider.outcomes.lock().unwrap().insert(
        "api_calls".into(),
        UsageOutcome::Rejected {
            code: "InvalidUsageDimension".into(),
            detail: "no such dimension".into(),
        },
    );
    h.engine
        .ingest_usage(
            &[input(
                sub.id,
                "api_calls",
                "1",
                h.clock.now() - Duration::hours(1),
            )],
            None,
        )
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(10));
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.dead, 1, "{run:?}");
    let dead = h
        .engine
        .store
        .usage_hours_in(UsageHourState::Dead, 10)
        .await
        .unwrap();
    assert!(
        dead.iter()
            .any(|d| d.last_error.as_deref() == Some("InvalidUsageDimension: no such dimension"))
    );
}

#[tokio::test]
async fn a_dead_hour_sent_again_by_an_operator_is_delivered_with_the_same_record() {
    let provider = Counting::new(Marketplace::AWS);
    let h = harness(provider.clone(), T0 + Duration::hours(2)).await;
    let sub = subscription(&h.engine.store, Marketplace::AWS, "c1").await;
    h.engine
        .ingest_usage(&[input(sub.id, "api_calls", "4", T0)], None)
        .await
        .unwrap();
    provider.outcomes.lock().unwrap().insert(
        "api_calls".into(),
        UsageOutcome::Rejected {
            code: "CustomerNotEntitledException".into(),
            detail: "not entitled".into(),
        },
    );
    assert_eq!(h.engine.flush_usage().await.unwrap().dead, 1);
    let dead = h
        .engine
        .store
        .usage_hours_in(UsageHourState::Dead, 10)
        .await
        .unwrap();
    // Only dead hours can be sent again.
    let now = h.clock.now();
    let delivered_id = Uuid::now_v7();
    assert!(matches!(
        h.engine.store.usage_requeue(delivered_id, now).await,
        Err(marketlink_store::StoreError::NotFound(_))
    ));
    // The operator fixed the entitlement and sends the hour again.
    provider.outcomes.lock().unwrap().clear();
    h.engine.store.usage_requeue(dead[0].id, now).await.unwrap();
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.delivered, 1, "{run:?}");
    let rows = h.engine.store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(rows[0].state, UsageHourState::Delivered);
    let sent = provider.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0], sent[1],
        "the identical frozen record went out again"
    );
    assert!(matches!(
        h.engine.store.usage_requeue(dead[0].id, now).await,
        Err(marketlink_store::StoreError::NotFound(_))
    ));
}
