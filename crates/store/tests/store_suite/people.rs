//! People: users of one tenant, roles, and the last owner.

use marketlink_store::{Store, StoreError};

use crate::{T0, story, tenant};

async fn users_belong_to_one_tenant_and_emails_are_unique(store: &Store) {
    use marketlink_core::{Role, User};

    let acme = tenant("Acme");
    let owner = User::new(acme.id, " Ops@Acme.Example ", Some("Ops"), Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, Some("$argon2id$hash"))
        .await
        .unwrap();
    let (found, hash) = store
        .find_user_by_email("OPS@acme.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, owner);
    assert_eq!(found.email, "ops@acme.example");
    assert_eq!(hash.as_deref(), Some("$argon2id$hash"));

    // A second tenant whose owner reuses the email is refused as a whole: no orphan tenant.
    let other = tenant("Other");
    let clash = User::new(other.id, "ops@acme.example", None, Role::Owner, T0).unwrap();
    assert!(matches!(
        store.create_tenant_with_owner(&other, &clash, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.get_tenant(other.id).await,
        Err(StoreError::NotFound(_))
    ));

    let member = User::new(acme.id, "dev@acme.example", None, Role::Member, T0).unwrap();
    store.create_user(&member, None).await.unwrap();
    assert_eq!(store.list_users(acme.id).await.unwrap().len(), 2);
    assert_eq!(store.get_user(member.id).await.unwrap().role, Role::Member);
}
story!(users, users_belong_to_one_tenant_and_emails_are_unique);

async fn roles_change_and_people_leave_but_one_owner_stays(store: &Store) {
    use marketlink_core::{Role, User};

    let acme = tenant("Acme");
    let owner = User::new(acme.id, "owner@acme.example", None, Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, None)
        .await
        .unwrap();
    let dev = User::new(acme.id, "dev@acme.example", None, Role::Member, T0).unwrap();
    store.create_user(&dev, None).await.unwrap();

    // The only owner can neither step down nor leave.
    for change in [Some(Role::Admin), Some(Role::Member), None] {
        assert!(matches!(
            store.change_user(acme.id, owner.id, change).await,
            Err(StoreError::Conflict(m)) if m.contains("at least one owner")
        ));
    }
    // A second owner makes it possible.
    let promoted = store
        .change_user(acme.id, dev.id, Some(Role::Owner))
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Owner);
    assert_eq!(store.get_user(dev.id).await.unwrap().role, Role::Owner);
    store
        .change_user(acme.id, owner.id, Some(Role::Admin))
        .await
        .unwrap();
    // Another tenant's id does not reach this user.
    let other = tenant("Other");
    store.create_tenant(&other).await.unwrap();
    assert!(matches!(
        store.change_user(other.id, owner.id, None).await,
        Err(StoreError::NotFound(_))
    ));
    store.change_user(acme.id, owner.id, None).await.unwrap();
    assert!(matches!(
        store.get_user(owner.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_users(acme.id).await.unwrap().len(), 1);
    // The email is free again.
    assert!(
        store
            .find_user_by_email("owner@acme.example")
            .await
            .unwrap()
            .is_none()
    );
}
story!(people, roles_change_and_people_leave_but_one_owner_stays);

/// A role change reads (the owners, the user) and then writes; other connections writing at the
/// same time (the workers, other requests) must make it wait, never fail.
async fn roles_change_while_others_write(store: &Store) {
    use marketlink_core::{Role, User};

    let acme = tenant("Acme");
    let owner = User::new(acme.id, "owner@acme.example", None, Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, None)
        .await
        .unwrap();
    let dev = User::new(acme.id, "dev@acme.example", None, Role::Member, T0).unwrap();
    store.create_user(&dev, None).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let email = format!("writer{i}@acme.example");
                let user = User::new(acme.id, &email, None, Role::Member, T0).unwrap();
                store.create_user(&user, None).await.unwrap();
            }
        })
    };
    for i in 0..100 {
        let role = if i % 2 == 0 {
            Role::Admin
        } else {
            Role::Member
        };
        store
            .change_user(acme.id, dev.id, Some(role))
            .await
            .unwrap();
    }
    writer.await.unwrap();
    assert_eq!(store.get_user(dev.id).await.unwrap().role, Role::Member);
    assert_eq!(store.list_users(acme.id).await.unwrap().len(), 102);
}
story!(roles_under_writes, roles_change_while_others_write);
