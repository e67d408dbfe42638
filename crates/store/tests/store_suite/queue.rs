//! The inbox and outbox queues (leases, concurrent claimers, backlog) and periodic jobs
//! (ADR 0007).

use marketlink_core::{AuthenticatedMessage, Marketplace};
use marketlink_store::{InboxInsert, NewJob, QueueState, Store, StoreError};
use time::Duration;

use crate::{T0, story};

fn message(key: &str) -> AuthenticatedMessage {
    AuthenticatedMessage {
        marketplace: Marketplace::AWS,
        dedup_key: key.into(),
        kind: "subscribe-success".into(),
        received_at: T0,
        payload: serde_json::json!({"action": "subscribe-success", "customer-identifier": "c"}),
    }
}

async fn inbox_deduplicates_and_leases(store: &Store) {
    let first = store.inbox_insert(&message("msg-1"), T0).await.unwrap();
    assert!(matches!(first, InboxInsert::Inserted(_)));
    let dup = store.inbox_insert(&message("msg-1"), T0).await.unwrap();
    assert_eq!(dup, InboxInsert::Duplicate(first.id()));
    store.inbox_insert(&message("msg-2"), T0).await.unwrap();

    let lease = Duration::seconds(30);
    let claimed = store.inbox_claim(T0, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let stored: AuthenticatedMessage = serde_json::from_value(claimed[0].payload.clone()).unwrap();
    assert_eq!(stored, message("msg-1"));
    // Leased items are not handed out twice.
    assert!(store.inbox_claim(T0, lease, 10).await.unwrap().is_empty());

    store.inbox_complete(&claimed[0], T0).await.unwrap();
    let retry_at = T0 + Duration::minutes(1);
    store
        .inbox_retry(&claimed[1], "GetEntitlements throttled", retry_at, T0)
        .await
        .unwrap();
    assert!(store.inbox_claim(T0, lease, 10).await.unwrap().is_empty());
    let again = store.inbox_claim(retry_at, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(
        again[0].last_error.as_deref(),
        Some("GetEntitlements throttled")
    );
    store
        .inbox_bury(&again[0], "gave up", retry_at)
        .await
        .unwrap();
    let dead = store.inbox_list(QueueState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        store.inbox_backlog(retry_at).await.unwrap().0,
        0,
        "dead items are not backlog"
    );
    store.inbox_requeue(dead[0].id, retry_at).await.unwrap();
    assert_eq!(store.inbox_backlog(retry_at).await.unwrap().0, 1);
}
story!(inbox, inbox_deduplicates_and_leases);

async fn expired_leases_are_taken_over(store: &Store) {
    store
        .outbox_enqueue(
            &NewJob {
                marketplace: "azure".into(),
                kind: "activate".into(),
                dedup_key: "sub-1".into(),
                payload: serde_json::json!({"subscription": "sub-1"}),
                run_at: T0,
            },
            T0,
        )
        .await
        .unwrap();
    let lease = Duration::seconds(30);
    let stalled = store
        .outbox_claim(T0, lease, 10, Some("activate"))
        .await
        .unwrap();
    assert_eq!(stalled.len(), 1);
    assert!(
        store
            .outbox_claim(T0, lease, 10, Some("usage"))
            .await
            .unwrap()
            .is_empty()
    );
    // The first worker stalls past its lease; a second takes the job over.
    let later = T0 + Duration::seconds(31);
    let taken = store.outbox_claim(later, lease, 10, None).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_ne!(taken[0].lease_id, stalled[0].lease_id);
    // The stalled worker can no longer complete it.
    assert!(matches!(
        store.outbox_complete(&stalled[0], later).await,
        Err(StoreError::Conflict(_))
    ));
    store.outbox_complete(&taken[0], later).await.unwrap();
    assert_eq!(
        store.outbox_list(QueueState::Done, 10).await.unwrap().len(),
        1
    );
}
story!(leases, expired_leases_are_taken_over);

async fn concurrent_claimers_never_share_a_job(store: &Store) {
    for i in 0..40 {
        store
            .outbox_enqueue(
                &NewJob {
                    marketplace: "aws".into(),
                    kind: "usage".into(),
                    dedup_key: format!("batch-{i}"),
                    payload: serde_json::json!({ "i": i }),
                    run_at: T0,
                },
                T0,
            )
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .outbox_claim(T0, Duration::minutes(5), 3, None)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break mine;
                }
                for item in batch {
                    store.outbox_complete(&item, T0).await.unwrap();
                    mine.push(item.dedup_key);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 40, "every job claimed exactly once");
    assert_eq!(all.len(), 40);
}
story!(concurrent_claims, concurrent_claimers_never_share_a_job);

async fn outbox_backlog_counts_waiting_and_dead_jobs_by_kind(store: &Store) {
    for (kind, key) in [
        ("webhook", "w1"),
        ("webhook", "w2"),
        ("webhook", "w3"),
        ("activate", "a1"),
    ] {
        store
            .outbox_enqueue(
                &NewJob {
                    marketplace: "aws".into(),
                    kind: kind.into(),
                    dedup_key: key.into(),
                    payload: serde_json::json!({}),
                    run_at: T0,
                },
                T0,
            )
            .await
            .unwrap();
    }
    let claimed = store
        .outbox_claim(T0, Duration::minutes(5), 10, None)
        .await
        .unwrap();
    for item in &claimed {
        match item.dedup_key.as_str() {
            "w1" => store.outbox_complete(item, T0).await.unwrap(),
            "a1" => store.outbox_bury(item, "refused", T0).await.unwrap(),
            _ => {}
        }
    }
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        vec![
            ("activate".to_string(), "dead".to_string(), 1),
            ("webhook".to_string(), "pending".to_string(), 2),
        ]
    );
}
story!(
    outbox_backlog,
    outbox_backlog_counts_waiting_and_dead_jobs_by_kind
);

// ---- Periodic jobs (ADR 0007) ----

async fn each_periodic_run_goes_to_one_replica(store: &Store) {
    let hour = Duration::hours(1);
    assert!(
        store
            .take_periodic_run("reconcile", T0, hour)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_periodic_run("reconcile", T0, hour)
            .await
            .unwrap()
    );
    let almost = T0 + Duration::minutes(59);
    assert!(
        !store
            .take_periodic_run("reconcile", almost, hour)
            .await
            .unwrap()
    );
    // Another job keeps its own schedule.
    assert!(
        store
            .take_periodic_run("other", almost, hour)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_periodic_run("reconcile", T0 + hour, hour)
            .await
            .unwrap()
    );
    // Replicas asking at once: one of them gets the run.
    let due = T0 + Duration::hours(3);
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_periodic_run("reconcile", due, hour).await })
        })
        .collect();
    let mut taken = 0;
    for asker in askers {
        taken += usize::from(asker.await.unwrap().unwrap());
    }
    assert_eq!(taken, 1);
}
story!(periodic_runs, each_periodic_run_goes_to_one_replica);
