//! Metering claims and settlement (ADR 0005, 0010): folding at claim time, racing
//! requests, frozen and leased hours, settling once.

use marketlink_core::Subscription;
use marketlink_store::{Store, StoreError};
use time::Duration;

use crate::{T0, aws_ref, story, usage_event};

/// ADR 0010: a request only stores its events; they reach their hourly totals (and tags) when
/// the next claim folds them, before it freezes any hour. Later usage for a frozen hour is
/// refused; usage for other hours is folded by the next claim.
async fn usage_reaches_its_hours_when_a_claim_folds_it(store: &Store) {
    use marketlink_core::{Quantity, UsageAllocation};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-f", "prod-a"), T0))
        .await
        .unwrap();
    let tagged = |units: u32, team: &str| {
        let mut e = usage_event(&sub, "api_calls", T0 + Duration::minutes(7), units, None);
        e.allocations = vec![UsageAllocation {
            quantity: Quantity::from_units(units),
            tags: vec![("team".into(), team.into())],
        }];
        e
    };
    store
        .usage_ingest(&[tagged(2, "red"), tagged(3, "blue"), tagged(4, "red")], T0)
        .await
        .unwrap();
    store
        .usage_ingest(&[usage_event(&sub, "storage_gb", T0, 1, None)], T0)
        .await
        .unwrap();
    // Two hourly totals to fold, then nothing left.
    assert_eq!(store.usage_fold().await.unwrap(), 2);
    assert_eq!(store.usage_fold().await.unwrap(), 0);
    store
        .usage_ingest(&[tagged(1, "blue")], T0 + Duration::minutes(30))
        .await
        .unwrap();
    // The claim folds the last event before it freezes 10:00.
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
    type Claimed = (String, String, Vec<(String, String)>);
    let mut claimed: Vec<Claimed> = claim
        .hours
        .iter()
        .map(|h| {
            let mut tags: Vec<(String, String)> = h
                .allocations
                .iter()
                .map(|a| (a.tags[0].1.clone(), a.quantity.to_string()))
                .collect();
            tags.sort();
            (h.dimension.clone(), h.quantity.to_string(), tags)
        })
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        vec![
            (
                "api_calls".into(),
                "10".into(),
                vec![("blue".into(), "4".into()), ("red".into(), "6".into())]
            ),
            ("storage_gb".into(), "1".into(), vec![]),
        ]
    );
    // 10:00 is frozen: refused whole, nothing stored; 11:00 is folded by the next read.
    let late = store
        .usage_ingest(
            &[
                usage_event(&sub, "api_calls", T0 + Duration::hours(1), 5, None),
                usage_event(&sub, "api_calls", T0 + Duration::minutes(50), 5, None),
            ],
            T0 + Duration::hours(2),
        )
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    store
        .usage_ingest(
            &[usage_event(
                &sub,
                "api_calls",
                T0 + Duration::hours(1),
                5,
                None,
            )],
            T0 + Duration::hours(2),
        )
        .await
        .unwrap();
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 6);
    let hours: Vec<(i64, String, String)> = store
        .usage_hours_of(sub.id)
        .await
        .unwrap()
        .iter()
        .map(|h| {
            (
                (h.hour - T0).whole_hours(),
                h.dimension.clone(),
                h.quantity.to_string(),
            )
        })
        .collect();
    assert_eq!(
        hours,
        vec![
            (0, "api_calls".into(), "10".into()),
            (0, "storage_gb".into(), "1".into()),
            (1, "api_calls".into(), "5".into()),
        ]
    );
}
story!(usage_fold, usage_reaches_its_hours_when_a_claim_folds_it);

/// Requests, two claimers (two replicas) and a reader racing on the same hours (on
/// PostgreSQL, on separate connections): every accepted event ends up in its hour, every
/// claim returns its hours frozen with the quantity they keep, no hour is claimed twice, and
/// no hour takes usage after it was frozen (its sent quantity is its quantity). A fold that
/// met a frozen hour would fail the reader or the last fold.
async fn usage_racing_claims_is_never_lost_or_added_after_freezing(store: &Store) {
    use std::collections::HashMap;
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-r", "prod-a"), T0))
        .await
        .unwrap();
    let now = T0 + Duration::hours(6);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, sub) = (store.clone(), sub.clone());
            tokio::spawn(async move {
                let mut accepted = 0u32;
                for i in 0..40 {
                    let at = T0 + Duration::hours((w + i) % 5) + Duration::minutes(i);
                    let units = 1 + (i % 3) as u32;
                    match store
                        .usage_ingest(&[usage_event(&sub, "api_calls", at, units, None)], now)
                        .await
                    {
                        Ok(o) => {
                            assert_eq!(o.accepted, 1);
                            accepted += units;
                        }
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => panic!("ingest: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                accepted
            })
        })
        .collect();
    let claimers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                for _ in 0..10 {
                    let claim = store
                        .usage_claim(now, now, Duration::minutes(5), 1, |_| true)
                        .await
                        .unwrap();
                    claimed.extend(claim.hours.into_iter().map(|h| {
                        assert_eq!(h.sent_quantity, Some(h.quantity), "returned unfrozen");
                        (h.id, h.quantity)
                    }));
                    tokio::task::yield_now().await;
                }
                claimed
            })
        })
        .collect();
    let reader = {
        let (store, sub) = (store.clone(), sub.clone());
        tokio::spawn(async move {
            for _ in 0..10 {
                store.usage_hours_of(sub.id).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut accepted = 0;
    for w in writers {
        accepted += w.await.unwrap();
    }
    let mut claimed = HashMap::new();
    for c in claimers {
        for (id, quantity) in c.await.unwrap() {
            assert!(claimed.insert(id, quantity).is_none(), "{id} claimed twice");
        }
    }
    reader.await.unwrap();
    store.usage_fold().await.unwrap();
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let total: i64 = hours.iter().map(|h| h.quantity.micros()).sum();
    assert_eq!(total, i64::from(accepted) * 1_000_000);
    for h in &hours {
        if let Some(sent) = h.sent_quantity {
            assert_eq!(
                sent, h.quantity,
                "hour {} took usage after freezing",
                h.hour
            );
        }
        if let Some(at_claim) = claimed.get(&h.id) {
            assert_eq!(
                *at_claim, h.quantity,
                "hour {} changed after its claim",
                h.hour
            );
        }
    }
}
story!(
    usage_race,
    usage_racing_claims_is_never_lost_or_added_after_freezing
);

async fn claimed_hours_are_frozen_leased_and_settled_once(store: &Store) {
    use marketlink_store::{UsageHourState, UsageSettlement};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-2", "prod-a"), T0))
        .await
        .unwrap();
    let now = T0 + Duration::hours(3);
    store
        .usage_ingest(
            &[
                usage_event(&sub, "api_calls", T0, 4, None),
                usage_event(&sub, "api_calls", T0 + Duration::hours(2), 1, None),
            ],
            now,
        )
        .await
        .unwrap();
    // Only the closed hour (10:00, closed through 11:00) is claimed; 12:00 is still open.
    let lease = Duration::minutes(5);
    let claim = store
        .usage_claim(now, T0 + Duration::hours(1), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), 1);
    let hour = &claim.hours[0];
    assert_eq!(hour.state, UsageHourState::Sending);
    assert_eq!(
        hour.sent_quantity,
        Some(marketlink_core::Quantity::from_units(4))
    );
    // The claim carries what the record is sent with: the subscription as AWS knows it.
    let target = &claim.targets[&sub.id];
    assert_eq!(target.external, sub.external);
    assert_eq!(target.plan_id, sub.plan_id);
    // A second flusher gets nothing while the lease holds.
    let other = store
        .usage_claim(now, T0 + Duration::hours(1), lease, 10, |_| false)
        .await
        .unwrap();
    assert!(other.hours.is_empty());
    // Late usage for the frozen hour is refused, and the whole batch with it.
    let late = store
        .usage_ingest(
            &[
                usage_event(
                    &sub,
                    "api_calls",
                    T0 + Duration::hours(2),
                    1,
                    Some("late-ok"),
                ),
                usage_event(
                    &sub,
                    "api_calls",
                    T0 + Duration::minutes(30),
                    1,
                    Some("late"),
                ),
            ],
            now,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 2);
    // The holder crashed: after the lease, another flusher takes the identical record over.
    let later = now + lease + Duration::seconds(1);
    let taken = store
        .usage_claim(later, T0 + Duration::hours(1), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(taken.hours.len(), 1);
    assert_eq!(taken.hours[0].id, hour.id);
    assert_eq!(taken.hours[0].attempts, 2);
    assert_eq!(taken.hours[0].sent_quantity, hour.sent_quantity);
    // The first holder's late bookkeeping is refused; the new holder's counts.
    let delivered = |id| {
        vec![(
            id,
            UsageSettlement::Delivered {
                marketplace_id: Some("mr-1".into()),
                outcome: "accepted".into(),
            },
        )]
    };
    assert_eq!(
        store
            .usage_settle(claim.lease_id, &delivered(hour.id), later)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .usage_settle(taken.lease_id, &delivered(hour.id), later)
            .await
            .unwrap(),
        1
    );
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(rows[0].state, UsageHourState::Delivered);
    assert_eq!(rows[0].marketplace_record_id.as_deref(), Some("mr-1"));
    // Retry keeps it frozen and due later; dead letters keep the reason.
    let much_later = T0 + Duration::hours(4);
    let claim = store
        .usage_claim(much_later, T0 + Duration::hours(2), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), 1);
    let retry_at = much_later + Duration::minutes(1);
    store
        .usage_settle(
            claim.lease_id,
            &[(
                claim.hours[0].id,
                UsageSettlement::Retry {
                    error: "throttled".into(),
                    at: retry_at,
                },
            )],
            much_later,
        )
        .await
        .unwrap();
    let not_yet = store
        .usage_claim(much_later, T0 + Duration::hours(2), lease, 10, |_| false)
        .await
        .unwrap();
    assert!(not_yet.hours.is_empty());
    let due = store
        .usage_claim(retry_at, T0 + Duration::hours(2), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(due.hours.len(), 1);
    store
        .usage_settle(
            due.lease_id,
            &[(
                due.hours[0].id,
                UsageSettlement::Dead {
                    reason: "InvalidUsageDimension".into(),
                },
            )],
            retry_at,
        )
        .await
        .unwrap();
    let dead = store
        .usage_hours_in(UsageHourState::Dead, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("InvalidUsageDimension"));
    let backlog = store.usage_backlog(T0 + Duration::hours(5)).await.unwrap();
    assert_eq!(backlog.due, 0);
    assert_eq!(backlog.by_state["dead"], 1);
}
story!(
    usage_claims,
    claimed_hours_are_frozen_leased_and_settled_once
);

/// One settlement of a claim mixing every outcome (SQLite writes delivered hours with a
/// narrower statement than the others): each hour gets its own state, record id, outcome and
/// error, and an hour of another lease is left alone.
async fn mixed_settlements_each_reach_their_hour(store: &Store) {
    use marketlink_store::{UsageHourState, UsageSettlement};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-mix", "prod-a"), T0))
        .await
        .unwrap();
    let now = T0 + Duration::hours(8);
    let events: Vec<_> = (0..5)
        .map(|h| usage_event(&sub, "api_calls", T0 + Duration::hours(h), 1, None))
        .collect();
    store.usage_ingest(&events, now).await.unwrap();
    let lease = Duration::minutes(5);
    let closed = T0 + Duration::hours(6);
    let claim = store
        .usage_claim(now, closed, lease, 4, |_| false)
        .await
        .unwrap();
    let other = store
        .usage_claim(now, closed, lease, 4, |_| false)
        .await
        .unwrap();
    assert_eq!((claim.hours.len(), other.hours.len()), (4, 1));
    let ids: Vec<_> = claim.hours.iter().map(|h| h.id).collect();
    let delivered = |record: &str, outcome: &str| UsageSettlement::Delivered {
        marketplace_id: Some(record.into()),
        outcome: outcome.into(),
    };
    let retry_at = now + Duration::minutes(1);
    let settlements = vec![
        (ids[0], delivered("mr-a", "accepted")),
        (
            ids[1],
            UsageSettlement::Retry {
                error: "throttled".into(),
                at: retry_at,
            },
        ),
        (ids[2], delivered("mr-c", "already_accepted")),
        (
            ids[3],
            UsageSettlement::Dead {
                reason: "refused".into(),
            },
        ),
        // Not this lease's: left alone.
        (other.hours[0].id, delivered("mr-x", "accepted")),
    ];
    let settled = store
        .usage_settle(claim.lease_id, &settlements, now)
        .await
        .unwrap();
    assert_eq!(settled, 4);
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    let row = |id| rows.iter().find(|r| r.id == id).unwrap();
    let seen = |id| {
        let r = row(id);
        (
            r.state,
            r.marketplace_record_id.clone(),
            r.outcome.clone(),
            r.last_error.clone(),
        )
    };
    let text = |s: &str| Some(s.to_owned());
    assert_eq!(
        seen(ids[0]),
        (
            UsageHourState::Delivered,
            text("mr-a"),
            text("accepted"),
            None
        )
    );
    assert_eq!(
        seen(ids[1]),
        (
            UsageHourState::Sending,
            None,
            text("retry"),
            text("throttled")
        )
    );
    assert_eq!(row(ids[1]).next_attempt_at, retry_at);
    assert_eq!(
        seen(ids[2]),
        (
            UsageHourState::Delivered,
            text("mr-c"),
            text("already_accepted"),
            None
        )
    );
    assert_eq!(
        seen(ids[3]),
        (UsageHourState::Dead, None, text("dead"), text("refused"))
    );
    assert_eq!(row(other.hours[0].id).state, UsageHourState::Sending);
    assert_eq!(row(ids[0]).lease_id, None);
}
story!(
    usage_mixed_settlements,
    mixed_settlements_each_reach_their_hour
);
