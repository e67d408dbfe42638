//! Verified email addresses: links used once before they expire, operators' confirmations,
//! invitations, and the list of addresses still to confirm.

use marketlink_core::{EmailVerified, Role, User, VerificationMethod};
use marketlink_store::{Invite, LinkUse, Store};
use time::Duration;

use crate::{T0, story, tenant};

async fn a_link_verifies_once_and_only_before_it_expires(store: &Store) {
    let acme = tenant("Acme");
    let owner = User::new(acme.id, "owner@acme.example", None, Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, None)
        .await
        .unwrap();
    assert_eq!(store.get_user(owner.id).await.unwrap().email_verified, None);
    let listed = store.unverified_users(10).await.unwrap();
    assert_eq!(listed.iter().map(|u| u.id).collect::<Vec<_>>(), [owner.id]);

    let expires = T0 + Duration::hours(24);
    store
        .create_email_verification(owner.id, "hash-stale", expires, T0)
        .await
        .unwrap();
    store
        .create_email_verification(owner.id, "hash-good", expires, T0)
        .await
        .unwrap();

    assert_eq!(
        store
            .use_email_verification("hash-forged", T0)
            .await
            .unwrap(),
        LinkUse::Unknown
    );
    assert_eq!(
        store
            .use_email_verification("hash-stale", expires)
            .await
            .unwrap(),
        LinkUse::Expired,
        "a link is dead at its expiry"
    );
    assert_eq!(store.get_user(owner.id).await.unwrap().email_verified, None);

    let at = T0 + Duration::hours(1);
    let LinkUse::Verified { user, newly } =
        store.use_email_verification("hash-good", at).await.unwrap()
    else {
        panic!("a fresh link verifies");
    };
    assert!(newly);
    let verified = Some(EmailVerified {
        method: VerificationMethod::Link,
        at,
    });
    assert_eq!(user.email_verified, verified);
    assert_eq!(
        store.get_user(owner.id).await.unwrap().email_verified,
        verified
    );
    assert!(store.unverified_users(10).await.unwrap().is_empty());
    assert_eq!(
        store
            .use_email_verification("hash-good", at + Duration::minutes(1))
            .await
            .unwrap(),
        LinkUse::Used
    );
    // Already verified: an operator's confirmation changes nothing and says so.
    assert_eq!(
        store
            .mark_email_verified(owner.id, VerificationMethod::Operator, at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_user(owner.id).await.unwrap().email_verified,
        verified
    );
}
story!(
    verification_links,
    a_link_verifies_once_and_only_before_it_expires
);

async fn operators_confirm_and_invitations_arrive_verified(store: &Store) {
    let acme = tenant("Acme");
    let owner = User::new(acme.id, "owner@acme.example", None, Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, None)
        .await
        .unwrap();
    let at = T0 + Duration::minutes(5);
    let confirmed = store
        .mark_email_verified(owner.id, VerificationMethod::Operator, at)
        .await
        .unwrap()
        .expect("first confirmation changes the user");
    assert_eq!(
        confirmed.email_verified.map(|v| (v.method, v.at)),
        Some((VerificationMethod::Operator, at))
    );
    assert!(matches!(
        store
            .mark_email_verified(
                marketlink_core::UserId::new(),
                VerificationMethod::Operator,
                at
            )
            .await,
        Err(marketlink_store::StoreError::NotFound(_))
    ));

    // An invited person is stored verified, as the engine builds them.
    let invite = Invite {
        tenant_id: acme.id,
        email: "dev@acme.example".into(),
        role: Role::Member,
        invited_by: owner.email.clone(),
        expires_at: T0 + Duration::days(7),
    };
    store
        .create_invite(&invite, "invite-hash", T0)
        .await
        .unwrap();
    let mut dev = User::new(acme.id, "dev@acme.example", None, Role::Member, at).unwrap();
    dev.email_verified = Some(EmailVerified {
        method: VerificationMethod::Invite,
        at,
    });
    store
        .accept_invite("invite-hash", &dev, "$argon2id$hash", at)
        .await
        .unwrap();
    assert_eq!(store.get_user(dev.id).await.unwrap(), dev);
    // Removing a user takes their links with them.
    store
        .create_email_verification(dev.id, "dev-link", at + Duration::hours(24), at)
        .await
        .unwrap();
    store.change_user(acme.id, dev.id, None).await.unwrap();
    assert_eq!(
        store.use_email_verification("dev-link", at).await.unwrap(),
        LinkUse::Unknown
    );
}
story!(
    verification_by_operator_and_invite,
    operators_confirm_and_invitations_arrive_verified
);
