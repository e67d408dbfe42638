//! The use cases behind the admin portal, the people pages and the vendor API: who may
//! change whose role, invitations, API keys seen per tenant with an audit trail, tenant
//! search scoped to a tenant-bound caller, repairs that need a dead item, readiness, and a
//! removed person's sessions ending.

use std::sync::Arc;

use marketlink_core::{
    ApiKey, Catalog, ManualClock, PeopleChangeRefused, Role, Scope, Tenant, TenantId, User,
};
use marketlink_engine::{
    Actor, ChangePolicy, Engine, Providers,
    admin::DeadQueue,
    people::{AcceptError, InviteError, PersonChangeError},
};
use marketlink_store::{Store, StoreError, StoreOptions};
use time::{OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

struct Harness {
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("o.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let engine = Engine::new(
        store,
        Providers::new(),
        Arc::new(ManualClock::new(T0)),
        Arc::new(Catalog { products: vec![] }),
        ChangePolicy::default(),
    );
    Harness { engine, _dir: dir }
}

impl Harness {
    /// A tenant named `name` with its owner `owner@<name>.example`.
    async fn tenant(&self, name: &str) -> (Tenant, User) {
        let email = format!("owner@{name}.example");
        let tenant = Tenant::new(name, None, &email, T0).unwrap();
        let owner = User::new(tenant.id, &email, None, Role::Owner, T0).unwrap();
        self.engine
            .store
            .create_tenant_with_owner(&tenant, &owner, None)
            .await
            .unwrap();
        (tenant, owner)
    }

    async fn member(&self, tenant: TenantId, email: &str, role: Role) -> User {
        let user = User::new(tenant, email, None, role, T0).unwrap();
        self.engine.store.create_user(&user, None).await.unwrap();
        user
    }

    fn key(&self, prefix: &str, tenant: Option<TenantId>) -> ApiKey {
        ApiKey {
            id: uuid::Uuid::now_v7(),
            name: format!("key {prefix}"),
            prefix: prefix.into(),
            scopes: vec![Scope::Admin],
            tenant_id: tenant,
            created_at: T0,
            revoked_at: None,
        }
    }
}

#[tokio::test]
async fn roles_change_only_as_the_viewers_role_allows() {
    let h = harness().await;
    let (tenant, owner) = h.tenant("acme").await;
    let admin = h.member(tenant.id, "admin@acme.example", Role::Admin).await;
    let member = h
        .member(tenant.id, "member@acme.example", Role::Member)
        .await;
    let engine = &h.engine;

    let refused = engine.change_person(&member, admin.id, None).await;
    assert!(matches!(
        refused,
        Err(PersonChangeError::Refused(PeopleChangeRefused::NotAManager))
    ));
    let refused = engine
        .change_person(&admin, owner.id, Some(Role::Member))
        .await;
    assert!(matches!(
        refused,
        Err(PersonChangeError::Refused(PeopleChangeRefused::OwnersOnly))
    ));
    let refused = engine
        .change_person(&owner, owner.id, Some(Role::Member))
        .await;
    assert!(matches!(
        refused,
        Err(PersonChangeError::Refused(PeopleChangeRefused::Yourself))
    ));

    let changed = engine
        .change_person(&admin, member.id, Some(Role::Admin))
        .await
        .unwrap();
    assert_eq!(changed.email, "member@acme.example");
    let people = engine.people(tenant.id).await.unwrap();
    assert_eq!(people.tenant_name, "acme");
    assert!(
        people
            .users
            .iter()
            .any(|u| u.id == member.id && u.role == Role::Admin)
    );
}

/// Removing a person ends their sessions on every device at once; a role change does not,
/// and nobody else's session ends.
#[tokio::test]
async fn a_removed_person_is_signed_out_everywhere() {
    let h = harness().await;
    let (tenant, owner) = h.tenant("acme").await;
    let member = h
        .member(tenant.id, "member@acme.example", Role::Member)
        .await;
    let session = |hash: &str, user: &User| marketlink_store::SessionRecord {
        id_hash: hash.into(),
        data: "{}".into(),
        user_id: Some(user.id),
        tenant_id: Some(user.tenant_id),
        operator: None,
        started_at: T0,
        expires_at: T0 + time::Duration::hours(12),
    };
    for (hash, user) in [("laptop", &member), ("phone", &member), ("owner", &owner)] {
        h.engine
            .start_session(&session(hash, user), None)
            .await
            .unwrap();
    }
    let engine = &h.engine;
    engine
        .change_person(&owner, member.id, Some(Role::Admin))
        .await
        .unwrap();
    assert!(engine.session("laptop").await.unwrap().is_some());
    engine.change_person(&owner, member.id, None).await.unwrap();
    assert!(engine.session("laptop").await.unwrap().is_none());
    assert!(engine.session("phone").await.unwrap().is_none());
    assert!(engine.session("owner").await.unwrap().is_some());
}

#[tokio::test]
async fn someone_of_another_tenant_looks_like_no_one() {
    let h = harness().await;
    let (_, owner) = h.tenant("acme").await;
    let (_, stranger) = h.tenant("globex").await;
    let answer = h.engine.change_person(&owner, stranger.id, None).await;
    assert!(matches!(answer, Err(PersonChangeError::NoSuchPerson)));
    let nobody = marketlink_core::UserId::new();
    let answer = h.engine.change_person(&owner, nobody, None).await;
    assert!(matches!(answer, Err(PersonChangeError::NoSuchPerson)));
}

#[tokio::test]
async fn invitations_are_checked_then_accepted_once() {
    let h = harness().await;
    let (tenant, owner) = h.tenant("acme").await;
    let member = h
        .member(tenant.id, "member@acme.example", Role::Member)
        .await;
    let engine = &h.engine;

    let refused = engine
        .invite(&member, "new@acme.example", "member", "h0")
        .await;
    assert!(matches!(refused, Err(InviteError::NotAManager)));
    let refused = engine
        .invite(&owner, "new@acme.example", "owner", "h0")
        .await;
    assert!(matches!(refused, Err(InviteError::InvalidRole)));
    let refused = engine.invite(&owner, "not-an-email", "member", "h0").await;
    assert_eq!(
        refused.unwrap_err().to_string(),
        "`not-an-email` is not an email address."
    );
    let refused = engine
        .invite(&owner, " Member@Acme.example ", "admin", "h0")
        .await;
    assert_eq!(
        refused.unwrap_err().to_string(),
        "member@acme.example already has an account here."
    );

    engine
        .invite(&owner, " New@Acme.example", "admin", "hash-1")
        .await
        .unwrap();
    let open = engine.open_invite("hash-1").await.unwrap().unwrap();
    assert_eq!(open.tenant_name, "acme");
    assert_eq!(open.invite.email, "new@acme.example");
    assert_eq!(open.invite.role, Role::Admin);
    assert!(engine.open_invite("other").await.unwrap().is_none());

    let user = engine
        .accept_invite("hash-1", &open.invite, "New Person", "pw-hash")
        .await
        .unwrap();
    assert_eq!((user.tenant_id, user.role), (tenant.id, Role::Admin));
    let again = engine
        .accept_invite("hash-1", &open.invite, "New Person", "pw-hash")
        .await;
    assert!(matches!(again, Err(AcceptError::Gone)), "{again:?}");
    assert!(engine.open_invite("hash-1").await.unwrap().is_none());
}

#[tokio::test]
async fn api_keys_are_seen_per_tenant_and_audited() {
    let h = harness().await;
    let (acme, _) = h.tenant("acme").await;
    let (globex, _) = h.tenant("globex").await;
    let engine = &h.engine;
    let operator = Actor::Operator("ops@vendor.example".into());

    let wide = h.key("wide", None);
    let acme_key = h.key("acme1", Some(acme.id));
    let globex_key = h.key("globex1", Some(globex.id));
    for key in [&wide, &acme_key, &globex_key] {
        engine.create_api_key(&operator, key, "hash").await.unwrap();
    }
    let missing = h.key("ghost", Some(TenantId::new()));
    let refused = engine.create_api_key(&operator, &missing, "hash").await;
    assert!(matches!(refused, Err(StoreError::NotFound("tenant"))));

    assert_eq!(engine.api_keys(None).await.unwrap().len(), 3);
    let seen: Vec<String> = engine
        .api_keys(Some(acme.id))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.prefix)
        .collect();
    assert_eq!(seen, ["acme1"]);

    let caller = Actor::ApiKey("acme1".into());
    let hidden = engine
        .revoke_api_key(&caller, Some(acme.id), "globex1")
        .await;
    assert!(matches!(hidden, Err(StoreError::NotFound("API key"))));
    let revoked = engine
        .revoke_api_key(&caller, Some(acme.id), "acme1")
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());

    let log = engine.audit_log(Some("key:acme1"), 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "api_key.revoke");
    let log = engine
        .audit_log(Some("admin:ops@vendor.example"), 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|e| e.action == "api_key.create"));
}

#[tokio::test]
async fn a_tenant_bound_caller_finds_only_its_own_tenant() {
    let h = harness().await;
    let (acme, _) = h.tenant("acme").await;
    h.tenant("globex").await;
    let engine = &h.engine;
    assert_eq!(
        engine
            .search_tenants(None, "", None, 50)
            .await
            .unwrap()
            .len(),
        2
    );
    let own = engine
        .search_tenants(Some(acme.id), "", None, 50)
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].id, acme.id);
    let filtered = engine
        .search_tenants(Some(acme.id), "globex", None, 50)
        .await
        .unwrap();
    assert!(filtered.is_empty());
    let detail = engine.tenant_detail(acme.id).await.unwrap();
    assert_eq!(detail.tenant.name, "acme");
    assert!(detail.subscriptions.is_empty());
}

#[tokio::test]
async fn repairs_need_a_dead_item_and_readiness_sees_the_database() {
    let h = harness().await;
    let operator = Actor::Operator("ops@vendor.example".into());
    for queue in ["inbox", "outbox", "usage"] {
        let queue = DeadQueue::parse(queue).unwrap();
        let answer = h
            .engine
            .retry_dead(&operator, queue, uuid::Uuid::now_v7())
            .await;
        assert!(matches!(answer, Err(StoreError::NotFound(_))), "{queue:?}");
    }
    assert!(DeadQueue::parse("elsewhere").is_none());
    let answer = h
        .engine
        .replay_webhook(&operator, uuid::Uuid::now_v7())
        .await;
    assert!(matches!(answer, Err(StoreError::NotFound(_))));
    // Nothing was repaired, so nothing was audited.
    assert!(h.engine.audit_log(None, 10).await.unwrap().is_empty());

    h.engine.readiness().await.unwrap();
    let overview = h.engine.overview().await.unwrap();
    assert_eq!((overview.tenants, overview.inbox_waiting), (0, 0));
    let backlogs = h.engine.backlogs(T0).await;
    assert_eq!(backlogs.inbox.unwrap().0, 0);
    assert!(backlogs.outbox.unwrap().is_empty());
    assert_eq!(backlogs.usage.unwrap().due, 0);
}

#[tokio::test]
async fn invitations_and_operators_verify_addresses_and_the_vendor_hears_how() {
    use marketlink_core::{EmailVerified, VerificationMethod};
    use marketlink_engine::{verification::ConfirmError, webhooks::WebhookSettings};

    let mut h = harness().await;
    h.engine = h.engine.with_webhooks(Some(WebhookSettings {
        url: "http://127.0.0.1:9/hooks".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
    }));
    let engine = &h.engine;
    let (_, owner) = h.tenant("acme").await;
    engine
        .invite(&owner, "new@acme.example", "member", "hash-v")
        .await
        .unwrap();
    let open = engine.open_invite("hash-v").await.unwrap().unwrap();
    let user = engine
        .accept_invite("hash-v", &open.invite, "New Person", "pw-hash")
        .await
        .unwrap();
    let by_invite = Some(EmailVerified {
        method: VerificationMethod::Invite,
        at: T0,
    });
    assert_eq!(user.email_verified, by_invite);
    let stored = engine.store.get_user(user.id).await.unwrap();
    assert_eq!(stored.email_verified, by_invite);

    // The owner typed their address at sign-up: only an operator can vouch for it here.
    let unverified = engine.unverified_users(10).await.unwrap();
    assert_eq!(
        unverified.iter().map(|u| u.id).collect::<Vec<_>>(),
        [owner.id]
    );
    let operator = Actor::Operator("ops@vendor.example".into());
    let confirmed = engine.confirm_email(&operator, owner.id).await.unwrap();
    assert_eq!(
        confirmed.email_verified.map(|v| v.method),
        Some(VerificationMethod::Operator)
    );
    let again = engine.confirm_email(&operator, owner.id).await;
    assert!(
        matches!(again, Err(ConfirmError::AlreadyVerified)),
        "{again:?}"
    );
    let audit = engine
        .audit_log(Some("admin:ops@vendor.example"), 10)
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "user.email_confirmed")
            .count(),
        1
    );

    // One `user.email_verified` per address, saying how.
    let queued = engine
        .store
        .outbox_claim(T0, time::Duration::minutes(1), 10, None)
        .await
        .unwrap();
    let told: Vec<(String, String)> = queued
        .iter()
        .filter(|job| job.payload["type"] == "user.email_verified")
        .map(|job| {
            let data = &job.payload["data"];
            (data["email"].to_string(), data["method"].to_string())
        })
        .collect();
    assert_eq!(
        told,
        [
            ("\"new@acme.example\"".into(), "\"invite\"".into()),
            ("\"owner@acme.example\"".into(), "\"operator\"".into()),
        ]
    );
}
