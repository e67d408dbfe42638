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

const EMAIL_VERIFICATION: i64 = 20261209000200;

/// The migration marks people who joined by an accepted invitation as verified by `invite`,
/// when they accepted it; everyone else stays unverified (their address was never checked).
async fn invited_people_are_verified_by_the_migration(db: &crate::common::TestDb) {
    use marketlink_core::UserId;
    use sqlx::{Connection, migrate::Migrator};

    let store = &db.store;
    let dialect = match store.backend() {
        marketlink_store::Backend::Sqlite => "sqlite",
        marketlink_store::Backend::Postgres => "postgres",
    };
    let mut before = Migrator::new(std::path::Path::new(&format!("../../migrations/{dialect}")))
        .await
        .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < EMAIL_VERIFICATION)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let acme = tenant("Acme");
    let (owner, dev) = (UserId::new(), UserId::new());
    let ms = |t: time::OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap();
    let accepted = T0 + Duration::hours(1);
    // Written as the previous release stored them; the same statements on either backend.
    macro_rules! seed {
        ($raw:ident) => {{
            before.run(&mut $raw).await.unwrap();
            sqlx::query(
                "INSERT INTO tenants (id, name, contact_email, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(acme.id.0)
            .bind(&acme.name)
            .bind(&acme.contact_email)
            .bind(ms(T0))
            .execute(&mut $raw)
            .await
            .unwrap();
            for (id, email, role) in [
                (owner, "owner@acme.example", "owner"),
                (dev, "dev@acme.example", "member"),
            ] {
                sqlx::query(
                    "INSERT INTO users (id, tenant_id, email, role, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.0)
                .bind(acme.id.0)
                .bind(email)
                .bind(role)
                .bind(ms(T0))
                .execute(&mut $raw)
                .await
                .unwrap();
            }
            // The owner was once invited elsewhere but never accepted: that proves nothing.
            for (hash, email, accepted_at) in [
                ("h-dev", "dev@acme.example", Some(ms(accepted))),
                ("h-owner", "owner@acme.example", None),
            ] {
                sqlx::query(
                    "INSERT INTO user_invites (token_hash, tenant_id, email, role, invited_by, \
                     created_at, expires_at, accepted_at) \
                     VALUES ($1, $2, $3, 'member', 'someone@acme.example', $4, $5, $6)",
                )
                .bind(hash)
                .bind(acme.id.0)
                .bind(email)
                .bind(ms(T0))
                .bind(ms(T0 + Duration::days(7)))
                .bind(accepted_at)
                .execute(&mut $raw)
                .await
                .unwrap();
            }
        }};
    }
    match store.backend() {
        marketlink_store::Backend::Sqlite => {
            let mut raw = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            seed!(raw);
        }
        marketlink_store::Backend::Postgres => {
            let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
            seed!(raw);
        }
    }
    store.migrate().await.unwrap();
    assert_eq!(store.get_user(owner).await.unwrap().email_verified, None);
    assert_eq!(
        store.get_user(dev).await.unwrap().email_verified,
        Some(EmailVerified {
            method: VerificationMethod::Invite,
            at: accepted,
        })
    );
}

#[tokio::test]
async fn invited_people_are_verified_by_the_migration_on_sqlite() {
    let db = crate::common::sqlite_unmigrated().await;
    invited_people_are_verified_by_the_migration(&db).await;
    db.destroy().await;
}

#[tokio::test]
async fn invited_people_are_verified_by_the_migration_on_postgres() {
    if let Some(db) = crate::common::postgres_unmigrated().await {
        invited_people_are_verified_by_the_migration(&db).await;
        db.destroy().await;
    }
}
