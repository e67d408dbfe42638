//! Metering ingest (ADR 0005): hourly aggregation, idempotency and group commits.

use marketlink_core::Subscription;
use marketlink_store::Store;
use time::Duration;

use crate::{T0, aws_ref, story, usage_event};

async fn usage_is_aggregated_hourly_and_idempotent(store: &Store) {
    use marketlink_store::UsageHourState;
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-1", "prod-a"), T0))
        .await
        .unwrap();
    let h10 = T0; // 10:00
    let batch = vec![
        usage_event(&sub, "api_calls", h10 + Duration::minutes(1), 2, Some("k1")),
        usage_event(
            &sub,
            "api_calls",
            h10 + Duration::minutes(59),
            3,
            Some("k2"),
        ),
        // The same key twice in one batch is stored once.
        usage_event(&sub, "api_calls", h10 + Duration::minutes(5), 3, Some("k2")),
        usage_event(&sub, "api_calls", h10 + Duration::minutes(61), 7, None),
        usage_event(&sub, "storage_gb", h10, 1, None),
    ];
    let outcome = store.usage_ingest(&batch, T0).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (4, 1));
    // The whole batch again: every keyed event is a duplicate, the unkeyed ones count again.
    let again = store.usage_ingest(&batch[..3], T0).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 4);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let summary: Vec<(String, i64, String)> = hours
        .iter()
        .map(|h| {
            (
                h.dimension.clone(),
                (h.hour - h10).whole_hours(),
                h.quantity.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api_calls".into(), 0, "5".into()),
            ("storage_gb".into(), 0, "1".into()),
            ("api_calls".into(), 1, "7".into()),
        ]
    );
    assert!(hours.iter().all(|h| h.state == UsageHourState::Open));
}
story!(usage_ingest, usage_is_aggregated_hourly_and_idempotent);

async fn a_group_commit_keeps_each_batch_all_or_nothing(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-g", "prod-a"), T0))
        .await
        .unwrap();
    // Freeze 10:00 by claiming it.
    store
        .usage_ingest(&[usage_event(&sub, "api_calls", T0, 1, None)], T0)
        .await
        .unwrap();
    let claim = store
        .usage_claim(
            T0 + Duration::hours(2),
            T0,
            Duration::minutes(5),
            10,
            |_| false,
        )
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), 1);
    let first = vec![
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 2, Some("g1")),
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 2, Some("g1")),
    ];
    // A new hour and the frozen one: refused as a whole.
    let refused = vec![
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 50, Some("g2")),
        usage_event(
            &sub,
            "api_calls",
            T0 + Duration::minutes(10),
            50,
            Some("g3"),
        ),
    ];
    // The same key as the first batch: a duplicate of what the group already stored.
    let third = vec![
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 2, Some("g1")),
        usage_event(&sub, "storage_gb", T0 + Duration::hours(1), 3, None),
    ];
    let results = store
        .usage_ingest_group(&[(&first, T0), (&refused, T0), (&third, T0)])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    let outcome = |i: usize| match &results[i] {
        Ok(o) => (o.accepted, o.duplicates),
        Err(e) => panic!("batch {i}: {e}"),
    };
    assert_eq!(outcome(0), (1, 1));
    assert!(
        matches!(results[1], Err(marketlink_store::StoreError::Conflict(_))),
        "{:?}",
        results[1]
    );
    assert_eq!(outcome(2), (1, 1));
    // Nothing of the refused batch is stored: its key is free and 11:00 holds 2 only.
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 3);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let summary: Vec<(String, i64, String)> = hours
        .iter()
        .map(|h| {
            (
                h.dimension.clone(),
                (h.hour - T0).whole_hours(),
                h.quantity.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api_calls".into(), 0, "1".into()),
            ("api_calls".into(), 1, "2".into()),
            ("storage_gb".into(), 1, "3".into()),
        ]
    );
    let retried = store
        .usage_ingest(
            &[usage_event(
                &sub,
                "api_calls",
                T0 + Duration::hours(1),
                50,
                Some("g2"),
            )],
            T0,
        )
        .await
        .unwrap();
    assert_eq!((retried.accepted, retried.duplicates), (1, 0));
}
story!(
    usage_group_commit,
    a_group_commit_keeps_each_batch_all_or_nothing
);
