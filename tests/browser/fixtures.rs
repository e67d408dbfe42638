//! What the journeys share outside the browser: the sandboxes' products and buyers, and the
//! vendor's side of product access (an API key, the check API).

use marketlink_core::{Scope, TenantId};
use marketlink_e2e::Stack;
use serde_json::Value;

/// The AWS sandbox's products (SNS notifications, and EventBridge + SQS).
pub const CLASSIC: &str = "mlsandboxclassic0000000001";
pub const CONCURRENT: &str = "mlsandboxconcurrent0000002";
/// A buyer known to the Microsoft sandbox's Entra sign-in.
pub const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
pub const PASSWORD: &str = "correct-horse-battery";

/// A small SVG logo, as a vendor would configure it (`[branding] logo_url`).
pub const LOGO: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='28' height='28'%3E%3Crect width='28' height='28' rx='6' fill='%230f766e'/%3E%3Cpath d='M7 19l5-6 4 4 5-8' stroke='white' stroke-width='2.5' fill='none'/%3E%3C/svg%3E";

pub async fn tenant_of(stack: &Stack, email: &str) -> TenantId {
    stack
        .store
        .find_user_by_email(email)
        .await
        .expect("store")
        .expect("the user exists")
        .0
        .tenant_id
}

/// The entitlement check, as the vendor's product calls it.
pub async fn check(stack: &Stack, key: &str, tenant: TenantId, feature: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}/api/v1/check?tenant={tenant}&product=analytics&feature={feature}",
            stack.app_url
        ))
        .bearer_auth(key)
        .send()
        .await
        .expect("check API")
        .json()
        .await
        .expect("check API answers JSON")
}

/// A new API key that may read entitlements.
pub async fn read_key(stack: &Stack) -> String {
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key(
        "product",
        vec![Scope::EntitlementsRead],
        None,
        time::OffsetDateTime::UNIX_EPOCH,
    );
    stack.store.create_api_key(&key, &hash).await.expect("key");
    plaintext
}
