//! The harness: a sandbox on an ephemeral port with a manual clock, a webhook receiver, an
//! HTTP client that trusts the sandbox CA, and helpers for tokens, purchases and operations.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use marketlink_core::clock::{Clock, ManualClock, SystemClock};
use marketlink_sandbox::azure::{
    AzureSandbox, AzureSandboxConfig, AzureSandboxHandle, PurchaseRequest,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{receiver::*, spec::*};

pub const API: &str = "api-version=2018-08-31";

pub struct T {
    pub sandbox: AzureSandboxHandle,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub specs: Specs,
    pub receiver: Receiver,
}

impl T {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut AzureSandboxConfig)) -> Self {
        let (receiver, webhook_url) = Receiver::start().await;
        let mut config = AzureSandboxConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            webhook_url,
            change_ack_timeout_ms: 400,
            webhook_retry_delays_ms: vec![30],
            webhook_max_attempts: 5,
            ..AzureSandboxConfig::default()
        };
        tweak(&mut config);
        let clock = ManualClock::new(SystemClock.now());
        let sandbox = AzureSandbox::start(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(sandbox.ca_pem.as_bytes()).unwrap(),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        T {
            sandbox,
            clock,
            http,
            specs: Specs::load(),
            receiver,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url)
    }

    pub async fn token_for(&self, client_id: &str, secret: &str, tenant: &str) -> String {
        let response = self
            .http
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", "20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn token(&self) -> String {
        let c = self.sandbox.config();
        self.token_for(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            &c.publisher_tenant_id,
        )
        .await
    }

    /// Calls a marketplace API (`/api{path}`), validates the answer against the OpenAPI
    /// operation `spec_path` and returns status, headers and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        spec_path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut request = self
            .http
            .request(method.clone(), self.url(&format!("/api{path}{sep}{API}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        self.specs.check(
            spec_path,
            &method.as_str().to_lowercase(),
            status.as_u16(),
            &body,
        );
        (status, headers, body)
    }

    pub async fn buy(&self, plan: &str, quantity: Option<i64>, buyer: usize) -> (Uuid, String) {
        let p = self
            .sandbox
            .purchase(PurchaseRequest {
                offer_id: "contoso-analytics".into(),
                plan_id: plan.into(),
                quantity,
                buyer_object_id: self.sandbox.config().users[buyer].object_id.clone(),
                subscription_name: None,
                is_test: true,
            })
            .await
            .unwrap();
        (p.subscription_id, p.token)
    }

    /// Buys and activates.
    pub async fn subscribed(&self, token: &str, plan: &str, quantity: Option<i64>) -> Uuid {
        let (id, _) = self.buy(plan, quantity, 0).await;
        let mut body = json!({"planId": plan});
        if let Some(q) = quantity {
            body["quantity"] = json!(q);
        }
        let (status, _, _) = self
            .call(
                Method::POST,
                &format!("/saas/subscriptions/{id}/activate"),
                "/saas/subscriptions/{subscriptionId}/activate",
                Some(token),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(status, 200);
        id
    }

    pub async fn op_status(&self, op: Uuid) -> String {
        self.sandbox.operation(op).await.unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn wait_op(&self, op: Uuid, status: &str) {
        for _ in 0..500 {
            if self.op_status(op).await == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "operation {op} never reached {status}: {}",
            self.op_status(op).await
        );
    }

    /// Verifies a JWT against the sandbox JWKS fetched over HTTPS through OIDC discovery.
    pub async fn verify_via_discovery(&self, tenant: &str, token: &str, audience: &str) -> Value {
        let discovery: Value = self
            .http
            .get(self.url(&format!("/{tenant}/v2.0/.well-known/openid-configuration")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jwks: Value = self
            .http
            .get(discovery["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == json!(kid))
            .expect("kid in JWKS");
        let decoding = DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
        jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .unwrap()
            .claims
    }
}

pub fn landing_token_from(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}
