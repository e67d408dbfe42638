//! Harness: a sandbox on 127.0.0.1:0 sharing a ManualClock with the provider, and a small
//! webhook receiver standing in for the web front end.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use marketlink_azure::{AzureConfig, AzureProvider};
use marketlink_core::{
    AuthenticatedMessage, Clock, ExternalRef, InboundMessage, LandingToken, ManualClock,
    MarketplaceEvent, MarketplaceProvider, PlanId, SystemClock,
};
use marketlink_sandbox::azure::{
    AzureSandbox, AzureSandboxConfig, AzureSandboxHandle, PurchaseRequest,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Webhook calls received, as the web front end would hand them to `authenticate`.
#[derive(Clone, Default)]
pub struct Receiver {
    pub calls: Arc<Mutex<Vec<InboundMessage>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let headers = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))
        })
        .collect();
    r.calls.lock().unwrap().push(InboundMessage {
        channel: "webhook".into(),
        headers,
        body: body.to_vec(),
    });
    axum::http::StatusCode::OK
}

impl Receiver {
    pub async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/azure/webhook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/azure/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    /// Waits for the webhook of `operation`.
    pub async fn wait_for(&self, operation: Uuid) -> InboundMessage {
        for _ in 0..500 {
            let found = self
                .calls
                .lock()
                .unwrap()
                .iter()
                .find(|m| {
                    serde_json::from_slice::<Value>(&m.body)
                        .ok()
                        .map(|b| b["id"].clone())
                        == Some(json!(operation))
                })
                .cloned();
            if let Some(m) = found {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no webhook for operation {operation}");
    }
}

pub struct H {
    pub sandbox: AzureSandboxHandle,
    pub clock: ManualClock,
    pub provider: AzureProvider,
    pub receiver: Receiver,
    /// Trusts the sandbox CA, follows no redirects (drives the sign-in page).
    pub http: reqwest::Client,
}

/// The provider configuration for a sandbox.
pub fn provider_config(sandbox: &AzureSandboxHandle) -> AzureConfig {
    let c = sandbox.config();
    let mut config = AzureConfig::new(
        c.publisher_tenant_id.clone(),
        c.publisher_app_id.clone(),
        c.publisher_app_secret.expose(),
    );
    config.authority_host = sandbox.authority_host().to_owned();
    config.marketplace_api_base = sandbox.marketplace_api_base();
    config.extra_ca_pem = Some(sandbox.ca_pem.clone());
    config.operation_poll_interval_ms = 20;
    config.operation_timeout_secs = 10;
    config
}

impl H {
    pub async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    pub async fn start_with(
        tweak_sandbox: impl FnOnce(&mut AzureSandboxConfig),
        tweak_provider: impl FnOnce(&mut AzureConfig),
    ) -> Self {
        Self::start_clocked(tweak_sandbox, tweak_provider, None).await
    }

    /// As [`H::start_with`]; with `sandbox_clock`, Microsoft's clock is that one and `clock`
    /// is the provider's alone (to make a cached token expire on Microsoft's side only).
    pub async fn start_clocked(
        tweak_sandbox: impl FnOnce(&mut AzureSandboxConfig),
        tweak_provider: impl FnOnce(&mut AzureConfig),
        sandbox_clock: Option<ManualClock>,
    ) -> Self {
        let (receiver, webhook_url) = Receiver::start().await;
        let mut config = AzureSandboxConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            webhook_url,
            // Long enough that the tests answer before the auto-accept.
            change_ack_timeout_ms: 60_000,
            webhook_retry_delays_ms: vec![30],
            webhook_max_attempts: 5,
            ..AzureSandboxConfig::default()
        };
        tweak_sandbox(&mut config);
        let clock = ManualClock::new(SystemClock.now());
        let sandbox_clock = sandbox_clock.unwrap_or_else(|| clock.clone());
        let sandbox = AzureSandbox::start(config, Arc::new(sandbox_clock))
            .await
            .unwrap();
        let mut provider_config = provider_config(&sandbox);
        tweak_provider(&mut provider_config);
        let provider = AzureProvider::new(provider_config, Arc::new(clock.clone())).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(sandbox.ca_pem.as_bytes()).unwrap(),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        H {
            sandbox,
            clock,
            provider,
            receiver,
            http,
        }
    }

    pub fn user(&self, i: usize) -> marketlink_sandbox::azure::TestUser {
        self.sandbox.config().users[i].clone()
    }

    /// A purchase by test user `buyer`: (subscription id, raw landing token, landing URL).
    pub async fn buy(
        &self,
        plan: &str,
        quantity: Option<i64>,
        buyer: usize,
    ) -> (Uuid, String, String) {
        let p = self
            .sandbox
            .purchase(PurchaseRequest {
                offer_id: "contoso-analytics".into(),
                plan_id: plan.into(),
                quantity,
                buyer_object_id: self.user(buyer).object_id,
                subscription_name: None,
                is_test: false,
            })
            .await
            .unwrap();
        (p.subscription_id, p.token, p.landing_url)
    }

    /// Buys, resolves and activates: the subscription's ExternalRef.
    pub async fn subscribed(&self, plan: &str, quantity: Option<i64>) -> ExternalRef {
        let (_, token, _) = self.buy(plan, quantity, 0).await;
        let resolved = self
            .provider
            .resolve(&LandingToken { token })
            .await
            .unwrap();
        self.provider
            .activate(
                &resolved.subscription,
                resolved.plan_id.as_ref(),
                resolved.quantity,
            )
            .await
            .unwrap();
        resolved.subscription
    }

    /// Calls the sandbox made to the token endpoint so far.
    pub async fn token_calls(&self) -> usize {
        self.sandbox
            .call_log()
            .await
            .iter()
            .filter(|c| c.path.contains("/oauth2/v2.0/token"))
            .count()
    }

    pub async fn calls_to(&self, fragment: &str) -> usize {
        self.sandbox
            .call_log()
            .await
            .iter()
            .filter(|c| c.path.contains(fragment))
            .count()
    }

    pub async fn sandbox_sub(&self, id: &str) -> Value {
        self.sandbox
            .subscription(Uuid::parse_str(id).unwrap())
            .await
            .unwrap()
    }

    pub async fn op_status(&self, op: &str) -> String {
        self.sandbox
            .operation(Uuid::parse_str(op).unwrap())
            .await
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// authenticate + interpret of the webhook of `operation`.
    pub async fn webhook_events(
        &self,
        operation: Uuid,
    ) -> (AuthenticatedMessage, Vec<MarketplaceEvent>) {
        let message = self.receiver.wait_for(operation).await;
        let authenticated = self.provider.authenticate(&message).await.unwrap();
        let events = self
            .provider
            .interpret(&authenticated, &marketlink_core::EmptyDirectory)
            .await
            .unwrap();
        (authenticated, events)
    }
}

pub fn plan(id: &str) -> PlanId {
    PlanId::new(id)
}
