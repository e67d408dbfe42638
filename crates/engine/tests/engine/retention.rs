//! Retention under a steady load (issue 21): a simulated year of daily notifications and audit
//! entries, pruned by the engine every day, keeps each table at its retention's size.

use marketlink_core::Lifecycle;
use marketlink_engine::{ChangePolicy, audit::Actor, retention::RetentionSettings};
use marketlink_store::QueueState;
use time::Duration;

use crate::harness::{T0, event, harness, lifecycle, message};

const PER_DAY: i64 = 4;

#[tokio::test]
async fn a_year_of_steady_traffic_stays_at_its_retention() {
    let h = harness(ChangePolicy::default()).await;
    let settings = RetentionSettings {
        messages_days: 30,
        audit_days: 60,
        batch: 25,
        pause_ms: 0,
        ..RetentionSettings::default()
    };
    let mut pruned_messages = 0;
    let mut largest_inbox = 0;
    for day in 0..365 {
        let today = T0 + Duration::days(day);
        h.clock.set(today);
        for n in 0..PER_DAY {
            let kind = lifecycle(if n % 2 == 0 {
                Lifecycle::Activate
            } else {
                Lifecycle::Suspend
            });
            let events = vec![event(&format!("sub-{n}"), today, kind)];
            h.deliver(message(&format!("day-{day}-{n}"), events)).await;
        }
        h.drain().await;
        h.engine
            .audit(
                &Actor::Operator("ops@vendor.example".into()),
                "test.daily",
                None,
                serde_json::json!({ "day": day }),
            )
            .await;
        let report = h.engine.prune_expired(&settings).await.unwrap();
        assert!(!report.unfinished);
        pruned_messages += report.deleted["inbox_messages"];
        let done = h
            .engine
            .store
            .inbox_list(QueueState::Done, 10_000)
            .await
            .unwrap();
        largest_inbox = largest_inbox.max(done.len());
    }
    // 30 days of 4 messages a day, plus the day being written.
    assert!(
        largest_inbox as i64 <= 31 * PER_DAY,
        "inbox grew to {largest_inbox}"
    );
    assert_eq!(pruned_messages as i64, (365 - 31) * PER_DAY);
    let audit = h.engine.audit_log(None, 10_000).await.unwrap();
    assert!(audit.len() <= 61, "audit log grew to {}", audit.len());
    println!(
        "a simulated year: {} notifications, largest inbox {largest_inbox} rows, {pruned_messages} pruned; audit log {} rows",
        365 * PER_DAY,
        audit.len()
    );
}
