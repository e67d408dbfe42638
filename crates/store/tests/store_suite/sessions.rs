//! Browser sessions: found only while live, written back without bringing an ended one back,
//! rotated in one step, ended one at a time or all of a user's or an operator's, pruned.

use marketlink_core::{TenantId, UserId};
use marketlink_store::{SessionRecord, Store};
use time::Duration;

use crate::{T0, story};

fn record(id_hash: &str, user: Option<UserId>, operator: Option<&str>) -> SessionRecord {
    SessionRecord {
        id_hash: id_hash.into(),
        data: format!("{{\"csrf\":\"{id_hash}\"}}"),
        user_id: user,
        tenant_id: user.map(|_| TenantId(uuid::Uuid::now_v7())),
        operator: operator.map(str::to_owned),
        started_at: T0,
        expires_at: T0 + Duration::hours(12),
    }
}

async fn a_session_lives_until_it_expires_and_is_written_back(store: &Store) {
    let alice = UserId(uuid::Uuid::now_v7());
    let first = record("hash-a", Some(alice), None);
    store.insert_session(&first, None, T0).await.unwrap();
    let live = store.live_session("hash-a", T0).await.unwrap().unwrap();
    assert_eq!(live.data, first.data);
    assert_eq!(live.started_at, T0);
    assert_eq!(live.expires_at, first.expires_at);
    assert!(store.live_session("hash-b", T0).await.unwrap().is_none());

    // Written back: new data, later expiry.
    let later = T0 + Duration::hours(1);
    let mut changed = first.clone();
    changed.data = "{\"csrf\":\"changed\"}".into();
    changed.expires_at = later + Duration::hours(12);
    assert!(store.update_session(&changed, later).await.unwrap());
    let live = store.live_session("hash-a", later).await.unwrap().unwrap();
    assert_eq!(live.data, changed.data);
    assert_eq!(live.expires_at, changed.expires_at);
    assert_eq!(live.started_at, T0, "the start never moves");

    // Expired: not found, and an update does not revive it.
    let past = changed.expires_at;
    assert!(store.live_session("hash-a", past).await.unwrap().is_none());
    assert!(!store.update_session(&changed, past).await.unwrap());

    // Ended: an update (a request in flight on another device) does not bring it back.
    let bob = record("hash-bob", None, None);
    store.insert_session(&bob, None, T0).await.unwrap();
    assert!(store.delete_session("hash-bob").await.unwrap());
    assert!(!store.delete_session("hash-bob").await.unwrap());
    assert!(!store.update_session(&bob, T0).await.unwrap());
    assert!(store.live_session("hash-bob", T0).await.unwrap().is_none());
}
story!(
    session_lifetime,
    a_session_lives_until_it_expires_and_is_written_back
);

async fn a_new_session_replaces_the_old_one_in_one_step(store: &Store) {
    let anonymous = record("before-sign-in", None, None);
    store.insert_session(&anonymous, None, T0).await.unwrap();
    let signed_in = record("after-sign-in", Some(UserId(uuid::Uuid::now_v7())), None);
    store
        .insert_session(&signed_in, Some("before-sign-in"), T0)
        .await
        .unwrap();
    assert!(
        store
            .live_session("before-sign-in", T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .live_session("after-sign-in", T0)
            .await
            .unwrap()
            .is_some()
    );
    // The same id twice is refused, not overwritten.
    assert!(store.insert_session(&signed_in, None, T0).await.is_err());
}
story!(
    session_rotation,
    a_new_session_replaces_the_old_one_in_one_step
);

async fn a_user_or_an_operator_is_signed_out_everywhere(store: &Store) {
    let (alice, bob) = (UserId(uuid::Uuid::now_v7()), UserId(uuid::Uuid::now_v7()));
    for (hash, user, operator) in [
        ("alice-laptop", Some(alice), None),
        ("alice-phone", Some(alice), None),
        ("bob", Some(bob), None),
        ("ops-laptop", None, Some("ops@vendor.example")),
        ("ops-phone", None, Some("ops@vendor.example")),
        ("other-ops", None, Some("other@vendor.example")),
    ] {
        store
            .insert_session(&record(hash, user, operator), None, T0)
            .await
            .unwrap();
    }
    assert_eq!(store.delete_user_sessions(alice).await.unwrap(), 2);
    assert_eq!(
        store
            .delete_operator_sessions("Ops@Vendor.Example")
            .await
            .unwrap(),
        2
    );
    for (hash, live) in [
        ("alice-laptop", false),
        ("alice-phone", false),
        ("bob", true),
        ("ops-laptop", false),
        ("ops-phone", false),
        ("other-ops", true),
    ] {
        assert_eq!(
            store.live_session(hash, T0).await.unwrap().is_some(),
            live,
            "{hash}"
        );
    }
}
story!(
    sessions_everywhere,
    a_user_or_an_operator_is_signed_out_everywhere
);

async fn expired_sessions_are_pruned_in_batches(store: &Store) {
    for n in 0..5 {
        let mut expired = record(&format!("expired-{n}"), None, None);
        expired.expires_at = T0 + Duration::minutes(n);
        store.insert_session(&expired, None, T0).await.unwrap();
    }
    store
        .insert_session(&record("live", None, None), None, T0)
        .await
        .unwrap();
    let now = T0 + Duration::hours(1);
    assert_eq!(store.prune_sessions(now, 3).await.unwrap(), 3);
    assert_eq!(store.prune_sessions(now, 3).await.unwrap(), 2);
    assert_eq!(store.prune_sessions(now, 3).await.unwrap(), 0);
    assert!(store.live_session("live", now).await.unwrap().is_some());
}
story!(session_pruning, expired_sessions_are_pruned_in_batches);
