//! Capped hours: a batch that would take an hour past the marketplace's cap on one hour's
//! record (AWS: 2,147,483,647 units) is refused whole, in its own transaction, and of two
//! concurrent batches that together pass the cap only one is taken.

use marketlink_core::{Quantity, Subscription};
use marketlink_store::{NewUsageEvent, Store, StoreError};
use time::Duration;

use crate::{T0, aws_ref, story, usage_event};

const CAP: u32 = i32::MAX as u32;

fn capped(mut event: NewUsageEvent) -> NewUsageEvent {
    event.hour_cap = Some(Quantity::from_units(CAP));
    event
}

async fn subscription(store: &Store, customer: &str) -> Subscription {
    store
        .upsert_subscription(&Subscription::pending(aws_ref(customer, "prod-a"), T0))
        .await
        .unwrap()
}

async fn an_hour_past_its_cap_refuses_the_batch(store: &Store) {
    let sub = subscription(store, "cap-1").await;
    let two_billion = |minute: i64, key: &str| {
        capped(usage_event(
            &sub,
            "api_calls",
            T0 + Duration::minutes(minute),
            2_000_000_000,
            Some(key),
        ))
    };
    store
        .usage_ingest(&[two_billion(1, "a")], T0)
        .await
        .unwrap();
    // The same event again is a duplicate and adds nothing.
    let again = store
        .usage_ingest(&[two_billion(1, "a")], T0)
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1);
    // A second 2,000,000,000 in the hour, with a harmless event beside it: all refused.
    let batch = [
        capped(usage_event(
            &sub,
            "api_calls",
            T0 + Duration::hours(1),
            5,
            None,
        )),
        two_billion(30, "b"),
    ];
    let err = store.usage_ingest(&batch, T0).await.unwrap_err();
    match err {
        StoreError::HourCapExceeded {
            subscription_id,
            dimension,
            hour,
            accepted_micros,
            adding_micros,
            cap_micros,
        } => {
            assert_eq!(subscription_id, sub.id.0);
            assert_eq!(dimension, "api_calls");
            assert_eq!(hour, T0);
            assert_eq!(accepted_micros, 2_000_000_000 * 1_000_000);
            assert_eq!(adding_micros, 2_000_000_000 * 1_000_000);
            assert_eq!(cap_micros, i64::from(CAP) * 1_000_000);
        }
        other => panic!("expected HourCapExceeded, got {other:?}"),
    }
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 1);
    // Up to the cap exactly is taken; one more unit is not.
    let rest = 147_483_647;
    let up_to = capped(usage_event(&sub, "api_calls", T0, rest, Some("c")));
    store.usage_ingest(&[up_to], T0).await.unwrap();
    let one_more = capped(usage_event(&sub, "api_calls", T0, 1, Some("d")));
    assert!(matches!(
        store.usage_ingest(&[one_more], T0).await,
        Err(StoreError::HourCapExceeded { .. })
    ));
    // Other hours, dimensions and uncapped usage are counted apart.
    let other_hour = capped(usage_event(
        &sub,
        "api_calls",
        T0 + Duration::hours(1),
        7,
        None,
    ));
    let other_dimension = capped(usage_event(&sub, "storage_gb", T0, CAP, None));
    let uncapped = usage_event(&sub, "api_calls", T0, 1, None);
    store
        .usage_ingest(&[other_hour, other_dimension, uncapped], T0)
        .await
        .unwrap();
    // One batch alone past the cap is refused too.
    let alone = [
        capped(usage_event(&sub, "exports", T0, CAP, None)),
        capped(usage_event(&sub, "exports", T0, 1, None)),
    ];
    assert!(matches!(
        store.usage_ingest(&alone, T0).await,
        Err(StoreError::HourCapExceeded {
            accepted_micros: 0,
            ..
        })
    ));
    // What was taken is what the hours hold.
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let api_calls_10 = hours
        .iter()
        .find(|h| h.dimension == "api_calls" && h.hour == T0)
        .unwrap();
    assert_eq!(
        api_calls_10.quantity.to_string(),
        (u64::from(CAP) + 1).to_string()
    );
}
story!(usage_cap, an_hour_past_its_cap_refuses_the_batch);

/// Two requests of 2,000,000,000 for one hour at once, each on its own transaction: one is
/// taken, the other refused, whichever commits first.
async fn concurrent_batches_cannot_both_pass_the_cap(store: &Store) {
    for round in 0..5 {
        let sub = subscription(store, &format!("cap-race-{round}")).await;
        let batch = |key: &str| {
            vec![capped(usage_event(
                &sub,
                "api_calls",
                T0,
                2_000_000_000,
                Some(key),
            ))]
        };
        let (a, b) = (batch("a"), batch("b"));
        let (first, second) = tokio::join!(store.usage_ingest(&a, T0), store.usage_ingest(&b, T0));
        let taken = [&first, &second].iter().filter(|r| r.is_ok()).count();
        assert_eq!(taken, 1, "round {round}: {first:?} {second:?}");
        for result in [first, second] {
            if let Err(e) = result {
                assert!(matches!(e, StoreError::HourCapExceeded { .. }), "{e:?}");
            }
        }
        assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 1);
    }
}
story!(usage_cap_race, concurrent_batches_cannot_both_pass_the_cap);

/// A group commit with several batches on the same hours (and two groups at once, taking them
/// in different orders) keeps each batch's answer and never deadlocks.
async fn group_commits_count_each_batch_against_the_cap(store: &Store) {
    let sub = subscription(store, "cap-group").await;
    let event = |dimension: &str, units: u32| capped(usage_event(&sub, dimension, T0, units, None));
    let first = vec![event("api_calls", 2_000_000_000), event("exports", 1)];
    let second = vec![event("exports", 1), event("api_calls", 2_000_000_000)];
    let third = vec![event("exports", 2)];
    let results = store
        .usage_ingest_group(&[(&first, T0), (&second, T0), (&third, T0)])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(StoreError::HourCapExceeded { .. })
    ));
    assert!(results[2].is_ok());
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 3);

    // Two groups over the same hours in opposite orders, several times over.
    for round in 0..5 {
        let a = [event("reports", 1), event("seats", 1)];
        let b = [event("seats", 1), event("reports", 1)];
        let (ab, ba) = ([(&a[..], T0), (&b[..], T0)], [(&b[..], T0), (&a[..], T0)]);
        let (x, y) = tokio::join!(store.usage_ingest_group(&ab), store.usage_ingest_group(&ba));
        for results in [x.unwrap(), y.unwrap()] {
            assert!(
                results.iter().all(Result::is_ok),
                "round {round}: {results:?}"
            );
        }
    }
}
story!(
    usage_cap_groups,
    group_commits_count_each_batch_against_the_cap
);
