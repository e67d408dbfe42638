//! Harness: the stand-in Google on 127.0.0.1:0 and a provider pointed at it, sharing a
//! ManualClock.

use std::sync::{Arc, Mutex};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use marketlink_core::{Clock, InboundMessage, ManualClock};
use marketlink_gcp::{GcpConfig, GcpProvider, PUSH_CHANNEL, PushConfig, SIGNUP_ISSUER};
use serde_json::{Value, json};
use time::macros::datetime;

use super::{
    google::{self, PROVIDER, Shared, World},
    keys,
};

pub const SERVICE: &str = "svc.gcpmarketplace.example.com";
pub const PUSH_AUDIENCE: &str = "https://marketlink.example.com/gcp/pubsub";
pub const PUSH_ACCOUNT: &str = "pubsub-push@vendor.iam.gserviceaccount.com";
pub const SUBSCRIPTION: &str = "projects/vendor/subscriptions/procurement";

pub struct Harness {
    pub world: Shared,
    pub clock: ManualClock,
    pub provider: GcpProvider,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut GcpConfig)) -> Self {
        let world: Shared = Arc::new(Mutex::new(World::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = google::router(world.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sa.json");
        let key = json!({
            "type": "service_account",
            "project_id": "vendor",
            "private_key_id": keys::service_account().kid,
            "private_key": keys::service_account().private_pem,
            "client_email": "procurement@vendor.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        std::fs::write(&key_file, key.to_string()).unwrap();
        let mut config = GcpConfig {
            provider_id: PROVIDER.into(),
            service_name: SERVICE.into(),
            signup_keys_url: format!("{base}/keys/signup"),
            oidc_keys_url: format!("{base}/keys/oidc"),
            procurement_url: base.clone(),
            pubsub_url: base.clone(),
            service_control_url: base.clone(),
            token_url: Some(format!("{base}/token")),
            credentials_file: Some(key_file),
            push: Some(PushConfig {
                audience: PUSH_AUDIENCE.into(),
                service_account_email: PUSH_ACCOUNT.into(),
                issuer: None,
            }),
            subscription: Some(SUBSCRIPTION.into()),
            ..GcpConfig::default()
        };
        adjust(&mut config);
        let clock = ManualClock::new(datetime!(2026-03-02 10:00 UTC));
        let provider = GcpProvider::new(config, Arc::new(clock.clone())).unwrap();
        Self {
            world,
            clock,
            provider,
            _dir: dir,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    pub fn add_account(&self, id: &str, approved: bool) {
        let state = if approved { "APPROVED" } else { "PENDING" };
        let account = json!({
            "name": format!("providers/{PROVIDER}/accounts/{id}"),
            "provider": PROVIDER,
            "state": "ACCOUNT_ACTIVE",
            "approvals": [{"name": "signup", "state": state}],
        });
        self.world
            .lock()
            .unwrap()
            .accounts
            .insert(id.into(), account);
    }

    pub fn add_entitlement(&self, id: &str, account: &str, state: &str) {
        let entitlement = json!({
            "name": format!("providers/{PROVIDER}/entitlements/{id}"),
            "account": format!("providers/{PROVIDER}/accounts/{account}"),
            "provider": PROVIDER,
            "productExternalName": SERVICE,
            "plan": "basic",
            "state": state,
            "orderId": format!("order-{id}"),
            "usageReportingId": format!("project_number:{id}"),
            "createTime": "2026-03-02T09:00:00Z",
            "updateTime": "2026-03-02T09:30:00Z",
        });
        self.world
            .lock()
            .unwrap()
            .entitlements
            .insert(id.into(), entitlement);
    }

    pub fn set(&self, entitlement: &str, field: &str, value: Value) {
        self.world
            .lock()
            .unwrap()
            .entitlements
            .get_mut(entitlement)
            .unwrap()[field] = value;
    }

    pub fn entitlement_state(&self, id: &str) -> String {
        self.world.lock().unwrap().entitlements[id]["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Google's sign-up claims for `account`, to be altered by a test.
    pub fn sign_up_claims(&self, account: &str) -> Value {
        json!({"iss": SIGNUP_ISSUER, "iat": self.now(), "exp": self.now() + 300, "aud": SERVICE, "sub": account,
               "google": {"user_identity": "u-1", "roles": ["account_admin"]}})
    }

    pub fn sign_up_token(&self, account: &str) -> String {
        keys::sign(
            keys::commerce(),
            &keys::commerce().kid,
            &self.sign_up_claims(account),
        )
    }

    /// A push request as Pub/Sub sends it, with a valid OIDC token unless `claims` replaces it.
    pub fn push(&self, notice: &Value, claims: Option<Value>) -> InboundMessage {
        let claims = claims.unwrap_or_else(|| self.push_claims());
        let token = keys::sign(keys::oidc(), &keys::oidc().kid, &claims);
        InboundMessage {
            channel: PUSH_CHANNEL.into(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            body: envelope(notice).to_string().into_bytes(),
        }
    }

    pub fn push_claims(&self) -> Value {
        json!({"iss": "https://accounts.google.com", "aud": PUSH_AUDIENCE, "email": PUSH_ACCOUNT,
               "email_verified": true, "iat": self.now(), "exp": self.now() + 3600, "sub": "1234"})
    }
}

/// A Procurement message about an entitlement (gcp.md §2).
pub fn entitlement_notice(event_id: &str, event_type: &str, entitlement: &str) -> Value {
    json!({"eventId": event_id, "eventType": event_type, "providerId": PROVIDER,
           "entitlement": {"id": entitlement, "updateTime": "2026-03-02T09:30:00Z"}})
}

pub fn pubsub_message(notice: &Value, message_id: &str) -> Value {
    json!({"data": STANDARD.encode(notice.to_string()), "messageId": message_id,
           "publishTime": "2026-03-02T09:30:01Z", "attributes": {}})
}

pub fn envelope(notice: &Value) -> Value {
    json!({"message": pubsub_message(notice, "m-1"), "subscription": SUBSCRIPTION})
}
