//! Retention (issue 21): a simulated year of usage, messages and audit entries is pruned back
//! to its retention in small batches; what is unfinished stays, whatever its age.

use marketlink_core::{AuthenticatedMessage, Marketplace, Subscription};
use marketlink_store::{AuditEntry, NewJob, Prunable, Store, UsageSettlement};
use time::{Duration, OffsetDateTime};

use crate::{T0, aws_ref, story, usage_event};

const DAYS: i64 = 365;
const BATCH: u32 = 40;

/// Prunes `what` before `cutoff` batch by batch, as the engine does; returns rows deleted.
async fn prune_all(store: &Store, what: Prunable, cutoff: OffsetDateTime) -> u64 {
    let mut total = 0;
    loop {
        let deleted = store.prune(what, cutoff, BATCH).await.unwrap();
        assert!(
            deleted <= u64::from(BATCH),
            "a batch never exceeds its limit"
        );
        total += deleted;
        if deleted < u64::from(BATCH) {
            return total;
        }
    }
}

/// One event a day for a year, each hour delivered but one left dead; 90 days kept.
async fn a_year_of_usage_is_pruned_to_its_retention(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("keep-1", "prod-a"), T0))
        .await
        .unwrap();
    let start = T0 - Duration::days(DAYS);
    for day in 0..DAYS {
        let at = start + Duration::days(day) + Duration::minutes(5);
        let key = format!("day-{day}");
        let event = usage_event(&sub, "api_calls", at, 1, Some(key.as_str()));
        store.usage_ingest(&[event], at).await.unwrap();
    }
    let claim = store
        .usage_claim(T0, T0, Duration::minutes(5), 1000, |_| false)
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), DAYS as usize);
    let settlements: Vec<_> = claim
        .hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let settlement = if i == 3 {
                UsageSettlement::Dead {
                    reason: "refused".into(),
                }
            } else {
                UsageSettlement::Delivered {
                    marketplace_id: None,
                    outcome: "Success".into(),
                }
            };
            (h.id, settlement)
        })
        .collect();
    store
        .usage_settle(claim.lease_id, &settlements, T0)
        .await
        .unwrap();

    let cutoff = T0 - Duration::days(90);
    let old_days = (cutoff - start).whole_days() as u64;
    assert_eq!(
        prune_all(store, Prunable::UsageEvents, cutoff).await,
        old_days
    );
    // The dead hour waits for an operator, however old.
    assert_eq!(
        prune_all(store, Prunable::UsageHours, cutoff).await,
        old_days - 1
    );
    let left = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(left.len() as u64, DAYS as u64 - old_days + 1);
    assert!(
        left.iter()
            .all(|h| h.hour >= cutoff || h.id == claim.hours[3].id)
    );
    assert_eq!(
        store.usage_event_count(sub.id).await.unwrap() as u64,
        DAYS as u64 - old_days
    );
    // A second run finds nothing more.
    assert_eq!(prune_all(store, Prunable::UsageHours, cutoff).await, 0);
}
story!(usage_retention, a_year_of_usage_is_pruned_to_its_retention);

/// Even pruning every event keeps the newest: SQLite numbers a new row one past the largest
/// present, and an emptied table would number new events below the fold's watermark, where
/// no claim would ever fold them.
async fn new_usage_is_folded_after_everything_was_pruned(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("keep-2", "prod-a"), T0))
        .await
        .unwrap();
    for i in 0..3 {
        let key = format!("k{i}");
        let event = usage_event(&sub, "api_calls", T0 + Duration::minutes(i), 1, Some(&key));
        store.usage_ingest(&[event], T0).await.unwrap();
    }
    assert_eq!(store.usage_fold().await.unwrap(), 1);
    let far_future = T0 + Duration::days(1000);
    assert_eq!(prune_all(store, Prunable::UsageEvents, far_future).await, 2);
    let later = T0 + Duration::hours(3);
    let event = usage_event(&sub, "storage_gb", later, 7, Some("after"));
    store.usage_ingest(&[event], later).await.unwrap();
    assert_eq!(
        store.usage_fold().await.unwrap(),
        1,
        "the event stored after pruning reaches its hour"
    );
}
story!(
    usage_retention_watermark,
    new_usage_is_folded_after_everything_was_pruned
);

fn message(key: &str, at: OffsetDateTime) -> AuthenticatedMessage {
    AuthenticatedMessage {
        marketplace: Marketplace::AWS,
        dedup_key: key.into(),
        kind: "subscribe-success".into(),
        received_at: at,
        payload: serde_json::json!({"action": "subscribe-success"}),
    }
}

/// Messages done long ago go; pending and dead-lettered ones stay, whatever their age.
async fn finished_messages_and_old_audit_entries_are_pruned(store: &Store) {
    let long_ago = T0 - Duration::days(200);
    let lease = Duration::minutes(1);
    for i in 0..5 {
        store
            .inbox_insert(&message(&format!("m{i}"), long_ago), long_ago)
            .await
            .unwrap();
        let job = NewJob {
            marketplace: "aws".into(),
            kind: "webhook".into(),
            dedup_key: format!("j{i}"),
            payload: serde_json::json!({}),
            run_at: long_ago,
        };
        store.outbox_enqueue(&job, long_ago).await.unwrap();
    }
    let inbox = store.inbox_claim(long_ago, lease, 10).await.unwrap();
    let outbox = store.outbox_claim(long_ago, lease, 10, None).await.unwrap();
    for (i, (m, j)) in inbox.iter().zip(&outbox).enumerate() {
        match i {
            0 => {
                store.inbox_bury(m, "gave up", long_ago).await.unwrap();
                store.outbox_bury(j, "gave up", long_ago).await.unwrap();
            }
            1 => {} // still leased: pending
            _ => {
                store.inbox_complete(m, long_ago).await.unwrap();
                store.outbox_complete(j, long_ago).await.unwrap();
            }
        }
    }
    for days_ago in [300, 200, 10] {
        store
            .audit(&AuditEntry {
                id: uuid::Uuid::now_v7(),
                actor: "cli".into(),
                action: format!("test.{days_ago}"),
                target: None,
                detail: serde_json::json!({}),
                at: T0 - Duration::days(days_ago),
            })
            .await
            .unwrap();
    }
    let cutoff = T0 - Duration::days(90);
    assert_eq!(prune_all(store, Prunable::InboxMessages, cutoff).await, 3);
    assert_eq!(prune_all(store, Prunable::OutboxJobs, cutoff).await, 3);
    assert_eq!(prune_all(store, Prunable::AuditEntries, cutoff).await, 2);
    assert_eq!(
        store
            .inbox_list(marketlink_store::QueueState::Dead, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .outbox_list(marketlink_store::QueueState::Dead, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let audit = store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "test.10");
}
story!(
    message_retention,
    finished_messages_and_old_audit_entries_are_pruned
);
