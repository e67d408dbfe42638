//! Entitlements follow the marketplace's view.

use marketlink_core::{Entitlement, EntitlementValue, EventKind, Marketplace};
use marketlink_engine::ChangePolicy;

use crate::harness::{T0, event, harness, message};

#[tokio::test]
async fn entitlements_are_replaced_with_the_marketplace_view() {
    let h = harness(ChangePolicy::default()).await;
    let seats = |n| Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(n),
        expires_at: None,
    };
    h.deliver(message(
        "a",
        vec![event(
            "s",
            T0,
            EventKind::EntitlementsChanged {
                entitlements: vec![seats(5)],
            },
        )],
    ))
    .await;
    h.deliver(message(
        "b",
        vec![event(
            "s",
            T0,
            EventKind::EntitlementsChanged {
                entitlements: vec![seats(9)],
            },
        )],
    ))
    .await;
    h.drain().await;
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        h.engine.store.entitlements(sub.id).await.unwrap(),
        vec![seats(9)]
    );
}
