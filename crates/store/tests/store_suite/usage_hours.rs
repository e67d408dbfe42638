//! Hourly totals beyond sending: zero-filling and the operators' per-hour counts.

use marketlink_core::Subscription;
use marketlink_store::Store;
use time::Duration;

use crate::{T0, aws_ref, story, usage_event};

async fn zero_hours_fill_from_first_sight(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-3", "prod-a"), T0))
        .await
        .unwrap();
    let dims = vec!["api_calls".to_owned(), "storage_gb".to_owned()];
    // First sight at 10:xx: nothing closed since.
    let created = store
        .usage_fill_zero_hours(
            sub.id,
            "aws",
            &dims,
            T0,
            T0 - Duration::hours(1),
            T0 - Duration::hours(20),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(created, 0);
    store
        .usage_ingest(
            &[usage_event(
                &sub,
                "api_calls",
                T0 + Duration::hours(1),
                3,
                None,
            )],
            T0,
        )
        .await
        .unwrap();
    // At 13:xx, hours 10, 11 and 12 have closed: zeros wherever no usage was reported.
    let now = T0 + Duration::hours(3);
    let created = store
        .usage_fill_zero_hours(
            sub.id,
            "aws",
            &dims,
            now,
            T0 + Duration::hours(2),
            T0 - Duration::hours(20),
            now,
        )
        .await
        .unwrap();
    assert_eq!(created, 5);
    let again = store
        .usage_fill_zero_hours(
            sub.id,
            "aws",
            &dims,
            now,
            T0 + Duration::hours(2),
            T0 - Duration::hours(20),
            now,
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(hours.len(), 6);
    let reported: Vec<_> = hours
        .iter()
        .filter(|h| h.quantity != marketlink_core::Quantity::ZERO)
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].quantity.to_string(), "3");
}
story!(usage_zero_hours, zero_hours_fill_from_first_sight);

async fn usage_is_counted_per_hour_for_operators(store: &Store) {
    use marketlink_store::{UsageHourSummary, UsageSettlement};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-9", "prod-a"), T0))
        .await
        .unwrap();
    let batch = vec![
        usage_event(&sub, "api_calls", T0, 2, None),
        usage_event(&sub, "storage_gb", T0, 1, None),
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 1, None),
        usage_event(&sub, "api_calls", T0 - Duration::hours(5), 1, None),
    ];
    store.usage_ingest(&batch, T0).await.unwrap();
    // The two totals of 10:00 are sent: one delivered, one dead.
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
    let at_ten: Vec<_> = claim.hours.iter().filter(|h| h.hour == T0).collect();
    assert_eq!(at_ten.len(), 2);
    let settlements = vec![
        (
            at_ten[0].id,
            UsageSettlement::Delivered {
                marketplace_id: None,
                outcome: "Success".into(),
            },
        ),
        (
            at_ten[1].id,
            UsageSettlement::Dead {
                reason: "refused".into(),
            },
        ),
    ];
    store
        .usage_settle(claim.lease_id, &settlements, T0 + Duration::hours(2))
        .await
        .unwrap();
    let summary = store.usage_by_hour(T0 - Duration::hours(1)).await.unwrap();
    let row = |hour, delivered, waiting, failed| UsageHourSummary {
        hour,
        marketplace: "aws".into(),
        delivered,
        waiting,
        failed,
        skipped: 0,
    };
    // Newest first; 05:00 is before `since`; 11:00 is still open.
    assert_eq!(
        summary,
        vec![row(T0 + Duration::hours(1), 0, 1, 0), row(T0, 1, 0, 1)]
    );
}
story!(usage_by_hour, usage_is_counted_per_hour_for_operators);

/// The marketplace refused an hour as another quantity (after a restore: a zero row, or a total
/// short of what it billed). Usage for that hour is still taken, and the hour goes out again
/// with the corrected total under the same id; a delivered hour stays frozen.
async fn a_mismatched_hour_takes_a_correction_and_opens_again(store: &Store) {
    use marketlink_store::{StoreError, UsageHourState, UsageSettlement};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-10", "prod-a"), T0))
        .await
        .unwrap();
    let batch = vec![
        usage_event(&sub, "api_calls", T0, 2, Some("a")),
        usage_event(&sub, "storage_gb", T0, 1, Some("b")),
    ];
    store.usage_ingest(&batch, T0).await.unwrap();
    let later = T0 + Duration::hours(2);
    let claim = |now| store.usage_claim(now, T0, Duration::minutes(5), 10, |_| false);
    let first = claim(later).await.unwrap();
    let id_of = |dimension: &str| {
        let hour = first.hours.iter().find(|h| h.dimension == dimension);
        hour.unwrap().id
    };
    let (calls, storage) = (id_of("api_calls"), id_of("storage_gb"));
    let mismatch = UsageSettlement::Mismatch {
        detail: "DuplicateRecord".into(),
    };
    let delivered = UsageSettlement::Delivered {
        marketplace_id: Some("r1".into()),
        outcome: "accepted".into(),
    };
    let settled = [(calls, mismatch), (storage, delivered.clone())];
    store
        .usage_settle(first.lease_id, &settled, later)
        .await
        .unwrap();

    let correction = vec![usage_event(&sub, "api_calls", T0, 3, Some("c"))];
    let taken = store.usage_ingest(&correction, later).await.unwrap();
    assert_eq!(taken.accepted, 1);
    let late = vec![usage_event(&sub, "storage_gb", T0, 1, Some("d"))];
    assert!(matches!(
        store.usage_ingest(&late, later).await,
        Err(StoreError::Conflict(_))
    ));

    let again = claim(later + Duration::minutes(1)).await.unwrap();
    let resent: Vec<_> = again.hours.iter().map(|h| (h.id, h.quantity)).collect();
    let five = marketlink_core::Quantity::from_units(5);
    assert_eq!(
        resent,
        vec![(calls, five)],
        "only the corrected hour goes out"
    );
    assert_eq!(again.hours[0].sent_quantity, Some(five));
    let settled = [(calls, delivered)];
    store
        .usage_settle(again.lease_id, &settled, later)
        .await
        .unwrap();
    let states: Vec<_> = store.usage_hours_of(sub.id).await.unwrap();
    assert!(
        states.iter().all(|h| h.state == UsageHourState::Delivered),
        "{states:?}"
    );
}
story!(
    usage_mismatch_correction,
    a_mismatched_hour_takes_a_correction_and_opens_again
);
