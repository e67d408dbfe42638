//! The world the matrix runs in: tenant A (an AWS buyer, with a member), tenant B (a Microsoft
//! buyer with an active subscription, a member, a pending invitation and a key of its own),
//! API keys of each scope, and an operator; and a snapshot of everything of B's.

use marketlink_core::{ApiKey, Marketplace, Scope, SubscriptionId, TenantId};
use marketlink_e2e::{
    Stack, aws_buyer_signs_up, browser, browser_trusting, operator, operator_signs_in, start_full,
};
use marketlink_sandbox::aws::OfferKind;
use reqwest::Client;

pub const OPERATOR: &str = "ops@vendor.example";
pub const OPERATOR_PASSWORD: &str = "operator passphrase 42";
pub const B_OWNER: &str = "alice@fabrikam.example";
pub const B_MEMBER: &str = "bob@fabrikam.example";
pub const B_INVITED: &str = "carol@fabrikam.example";
pub const A_OWNER: &str = "owner@acme.example";

/// Who calls: a browser with its own cookies, and maybe an API key it sends on every request.
pub struct Persona {
    pub name: &'static str,
    pub client: Client,
    pub key: Option<String>,
    /// A page of this persona's that carries its session's CSRF token.
    pub csrf_page: &'static str,
    /// May change tenant B (B's owner, a vendor-wide admin key, the operator): these run
    /// after B was checked unchanged by everyone else.
    pub rightful: bool,
    /// May see B's data (B's own people, a vendor-wide key, the operator).
    pub sees_b: bool,
}

/// Tenant B's real ids, which every request names where the route takes one.
pub struct TenantB {
    pub tenant: TenantId,
    pub subscription: SubscriptionId,
    pub member: String,
    pub key_prefix: String,
    pub invite_token: String,
}

pub struct World {
    pub stack: Stack,
    pub b: TenantB,
    pub personas: Vec<Persona>,
}

pub fn now() -> time::OffsetDateTime {
    marketlink_core::Clock::now(&marketlink_core::SystemClock)
}

async fn key(stack: &Stack, scopes: Vec<Scope>, tenant: Option<TenantId>) -> (ApiKey, String) {
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key("matrix", scopes, tenant, now());
    stack.store.create_api_key(&key, &hash).await.unwrap();
    (key, plaintext)
}

async fn tenant_of(stack: &Stack, email: &str) -> (TenantId, String) {
    let (user, _) = stack
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    (user.tenant_id, user.id.0.to_string())
}

fn persona(name: &'static str, client: Client, csrf_page: &'static str) -> Persona {
    Persona {
        name,
        client,
        key: None,
        csrf_page,
        rightful: false,
        sees_b: false,
    }
}

fn key_persona(name: &'static str, plaintext: String, rightful: bool) -> Persona {
    Persona {
        name,
        client: browser(),
        key: Some(plaintext),
        csrf_page: "/signin",
        rightful,
        sees_b: rightful,
    }
}

pub async fn world() -> World {
    let ops = operator(OPERATOR, OPERATOR_PASSWORD).await;
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = vec![ops];
            // As deployed, not as the demo: `/metrics` wants its own token, which no persona has.
            config.server.metrics_public = false;
            config.server.metrics_token =
                Some(serde_json::from_value(serde_json::json!("m".repeat(32))).unwrap());
        },
    )
    .await;

    // Tenant B: a Microsoft buyer, active, with a member, an invitation and a key.
    let b_owner = browser_trusting(&stack.azure.ca_pem);
    let external = crate::azure::active_subscription(&stack, &b_owner, "pro", Some(5)).await;
    let subscription = stack
        .store
        .find_subscription(&Marketplace::AZURE, &external)
        .await
        .unwrap()
        .unwrap()
        .id;
    let b_member = crate::people::invite_and_join(&stack, &b_owner, B_MEMBER, "member").await;
    let link = crate::people::invite(&stack, &b_owner, B_INVITED, "member").await;
    let invite_token = link.rsplit('/').next().unwrap().to_owned();
    let (b_tenant, _) = tenant_of(&stack, B_OWNER).await;
    let (_, member) = tenant_of(&stack, B_MEMBER).await;
    let (b_key, _) = key(&stack, vec![Scope::EntitlementsRead], Some(b_tenant)).await;

    // Tenant A: an AWS buyer with a member; A's keys of each scope.
    let a_owner = browser();
    aws_buyer_signs_up(
        &stack,
        &a_owner,
        OfferKind::Subscription,
        "444455556666",
        A_OWNER,
    )
    .await;
    let a_member =
        crate::people::invite_and_join(&stack, &a_owner, "dev@acme.example", "member").await;
    let (a_tenant, _) = tenant_of(&stack, A_OWNER).await;
    let (_, a_usage) = key(&stack, vec![Scope::UsageWrite], Some(a_tenant)).await;
    let (_, a_read) = key(&stack, vec![Scope::EntitlementsRead], Some(a_tenant)).await;
    let (_, a_admin) = key(&stack, vec![Scope::Admin], Some(a_tenant)).await;
    let (_, vendor_admin) = key(&stack, vec![Scope::Admin], None).await;
    let operator = operator_signs_in(&stack, OPERATOR, OPERATOR_PASSWORD).await;

    let mut b_owner = persona("B owner", b_owner, "/account");
    (b_owner.rightful, b_owner.sees_b) = (true, true);
    let mut b_member = persona("B member", b_member, "/account");
    b_member.sees_b = true;
    let mut operator = persona("operator", operator, "/admin/api-keys");
    (operator.rightful, operator.sees_b) = (true, true);
    let personas = vec![
        persona("anonymous", browser(), "/signin"),
        persona("A member", a_member, "/account"),
        persona("A owner", a_owner, "/account"),
        b_member,
        key_persona("A key usage:write", a_usage, false),
        key_persona("A key entitlements:read", a_read, false),
        key_persona("A key admin", a_admin, false),
        key_persona("vendor key admin", vendor_admin, true),
        b_owner,
        operator,
    ];
    World {
        stack,
        b: TenantB {
            tenant: b_tenant,
            subscription,
            member,
            key_prefix: b_key.prefix,
            invite_token,
        },
        personas,
    }
}

/// Everything of B's that no one but B's owner, a vendor-wide admin key or the operator may
/// change: the subscription's status, plan and seats, the people and their roles, the open
/// invitations, B's keys, and B's reported usage.
pub async fn snapshot(stack: &Stack, b: &TenantB) -> String {
    let store = &stack.store;
    let sub = store.get_subscription(b.subscription).await.unwrap();
    let mut users: Vec<_> = store
        .list_users(b.tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|u| format!("{} {} {:?}", u.id.0, u.email, u.role))
        .collect();
    users.sort();
    let invites: Vec<_> = store
        .open_invites(b.tenant, now())
        .await
        .unwrap()
        .into_iter()
        .map(|i| format!("{} {:?}", i.email, i.role))
        .collect();
    let keys: Vec<_> = store
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.tenant_id == Some(b.tenant))
        .map(|k| format!("{} {:?} revoked={:?}", k.prefix, k.scopes, k.revoked_at))
        .collect();
    let usage = store.usage_event_count(b.subscription).await.unwrap();
    format!(
        "subscription {:?} plan {:?} seats {:?}\nusers {users:?}\ninvites {invites:?}\n\
         keys {keys:?}\nusage events {usage}",
        sub.status, sub.plan_id, sub.quantity
    )
}
