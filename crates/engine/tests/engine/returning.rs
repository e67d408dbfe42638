//! A buyer who comes back: AWS classic listings resolve a buyer who subscribes again after
//! cancelling to the same subscription. The landing finds the account that holds it (sign in
//! there, rather than be refused a new one), linking it again works, and a newer
//! subscribe-success makes it active again.

use marketlink_core::{
    Alias, Lifecycle, Marketplace, PlanId, ResolvedPurchase, SubscriptionStatus,
};
use marketlink_engine::{ChangePolicy, NewAccount, SignUpError};
use time::Duration;

use crate::harness::{T0, event, external, harness, lifecycle, message};

fn purchase(id: &str) -> ResolvedPurchase {
    ResolvedPurchase {
        subscription: external(id),
        plan_id: Some(PlanId::new("basic")),
        quantity: None,
        free_trial: false,
        term: None,
        display_name: None,
        buyer_email: Some("buyer@example.com".into()),
        aliases: Vec::new(),
        parties: Vec::new(),
    }
}

#[tokio::test]
async fn a_returning_buyer_is_sent_to_their_account_and_active_again() {
    let h = harness(ChangePolicy::default()).await;
    let engine = &h.engine;
    let account = |email| {
        engine
            .new_account(NewAccount {
                name: "Ada Lovelace",
                company: "",
                email,
            })
            .unwrap()
    };
    let bought = purchase("s");
    assert!(engine.returning_purchase(&bought).await.unwrap().is_none());
    let (tenant, owner) = account("ada@example.com");
    let first = engine
        .sign_up_and_claim(&tenant, &owner, "$argon2id$not-checked-here", &bought)
        .await
        .unwrap();
    let at = |h: i64| T0 + Duration::hours(h);
    h.deliver(message(
        "a",
        vec![event("s", at(1), lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.deliver(message(
        "c",
        vec![event("s", at(3), lifecycle(Lifecycle::Cancel))],
    ))
    .await;
    assert_eq!(h.drain().await.processed, 2);
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);

    // Months later the buyer subscribes again: the landing resolves the same subscription.
    let held = engine.returning_purchase(&bought).await.unwrap().unwrap();
    assert_eq!((held.id, held.tenant_id), (first.id, Some(tenant.id)));
    // A new account cannot take it (the page says to sign in instead)...
    let (other, other_owner) = account("someone@example.com");
    let refused = engine
        .sign_up_and_claim(&other, &other_owner, "$argon2id$x", &bought)
        .await;
    assert!(
        matches!(refused, Err(SignUpError::AlreadyLinked(_))),
        "{refused:?}"
    );
    // ...signing in to the account that holds it links it again.
    let linked = engine.link_purchase(&owner, &bought).await.unwrap();
    assert_eq!((linked.id, linked.tenant_id), (first.id, Some(tenant.id)));
    h.deliver(message(
        "again",
        vec![event("s", at(30), lifecycle(Lifecycle::Activate))],
    ))
    .await;
    assert_eq!(h.drain().await.processed, 1);
    assert_eq!(h.status("s").await, SubscriptionStatus::Active);
    assert_eq!(engine.store.tenant_count().await.unwrap(), 1);
}

/// A subscription a notification created before anyone claimed it is not "returning": the
/// buyer sets it up as usual.
#[tokio::test]
async fn an_unclaimed_subscription_is_not_a_returning_one() {
    let h = harness(ChangePolicy::default()).await;
    h.deliver(message(
        "a",
        vec![event("s", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.drain().await;
    let bought = purchase("s");
    assert!(h.engine.stored_purchase(&bought).await.unwrap().is_some());
    assert!(
        h.engine
            .returning_purchase(&bought)
            .await
            .unwrap()
            .is_none()
    );
}

/// The marketplace may resolve a later token to another name of a subscription we know (a
/// renewal's licence, recorded as an alias): the claim binds that subscription rather than
/// storing a second one.
#[tokio::test]
async fn a_purchase_known_by_an_alias_claims_the_subscription_it_names() {
    let h = harness(ChangePolicy::default()).await;
    let test = Marketplace::parse("test").unwrap();
    let (tenant, owner) = h
        .engine
        .new_account(NewAccount {
            name: "Ada Lovelace",
            company: "",
            email: "ada@example.com",
        })
        .unwrap();
    let first = h
        .engine
        .sign_up_and_claim(&tenant, &owner, "$argon2id$x", &purchase("lic-1"))
        .await
        .unwrap();
    let renewed = Alias::new("license", "lic-2");
    h.engine
        .store
        .record_aliases(first.id, &test, std::slice::from_ref(&renewed), T0)
        .await
        .unwrap();
    let mut later = purchase("lic-2");
    later.aliases = vec![renewed];
    let held = h.engine.returning_purchase(&later).await.unwrap().unwrap();
    assert_eq!(held.id, first.id);
    let linked = h.engine.link_purchase(&owner, &later).await.unwrap();
    assert_eq!(linked.id, first.id);
    assert!(
        h.engine
            .store
            .find_subscription(&test, "lic-2")
            .await
            .unwrap()
            .is_none(),
        "no second subscription for the same agreement"
    );
}
