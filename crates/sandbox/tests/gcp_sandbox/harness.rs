//! A sandbox served on an ephemeral port with a manual clock, an access token obtained the way
//! a vendor does (key file → signed assertion → `/token`), and a push receiver.

use std::sync::{Arc, Mutex};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marketlink_core::clock::{Clock, ManualClock, SystemClock};
use marketlink_sandbox::gcp::{CLOUD_PLATFORM, GcpSandbox, GcpSandboxConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct T {
    pub sandbox: GcpSandbox,
    pub base: String,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

impl T {
    /// `GET url` (an absolute URL), its JSON body.
    pub async fn get_json(&self, url: &str) -> Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut GcpSandboxConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = GcpSandboxConfig {
            public_base_url: base.clone(),
            push_retry_delays_ms: vec![20, 40],
            ..GcpSandboxConfig::default()
        };
        tweak(&mut config);
        let clock = ManualClock::new(SystemClock.now());
        let sandbox = GcpSandbox::new(config, Arc::new(clock.clone())).unwrap();
        let router = sandbox.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut t = T {
            sandbox,
            base,
            clock,
            http,
            token: String::new(),
        };
        t.token = t.access_token(CLOUD_PLATFORM).await;
        t
    }

    /// A JWT-bearer assertion signed with the key file's private key.
    pub fn assertion(&self, claims: Value) -> String {
        let key = self.sandbox.service_account_key().unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.private_key_id.clone());
        let encoding = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
    }

    pub fn assertion_claims(&self, scope: &str) -> Value {
        let key = self.sandbox.service_account_key().unwrap();
        let now = self.clock.now().unix_timestamp();
        json!({"iss": key.client_email, "scope": scope, "aud": key.token_uri, "iat": now, "exp": now + 3600})
    }

    pub async fn exchange(&self, assertion: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ])
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub async fn access_token(&self, scope: &str) -> String {
        let (status, body) = self
            .exchange(&self.assertion(self.assertion_claims(scope)))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A call with the harness's access token; `body` none is a GET.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn provider(&self) -> String {
        format!("/v1/providers/{}", self.sandbox.config().provider_id)
    }

    /// Approves the account's sign-up and the entitlement, as a vendor's sign-up page and
    /// Pub/Sub handler do.
    pub async fn activate(&self, account_id: &str, entitlement_id: &str) {
        let p = self.provider();
        let (status, body) = self
            .call(
                "POST",
                &format!("{p}/accounts/{account_id}:approve"),
                Some(json!({"approvalName": "signup"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .call(
                "POST",
                &format!("{p}/entitlements/{entitlement_id}:approve"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// `eventType`s published so far.
    pub fn event_types(&self) -> Vec<String> {
        self.sandbox
            .published()
            .iter()
            .map(|m| m.data["eventType"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Asserts Google's error shape and returns its `status`.
pub fn google_status(body: &Value, code: u16) -> String {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["status"].as_str().unwrap().to_owned()
}

/// A push endpoint that records each request and answers with the next scripted status
/// (204 once the script is used up).
#[derive(Clone, Default)]
pub struct Receiver {
    pub requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    pub script: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>) -> (Receiver, String) {
        let receiver = Receiver {
            requests: Arc::default(),
            script: Arc::new(Mutex::new(script)),
        };
        async fn push(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
            r.requests
                .lock()
                .unwrap()
                .push((headers, serde_json::from_str(&body).unwrap()));
            let mut script = r.script.lock().unwrap();
            let code = if script.is_empty() {
                204
            } else {
                script.remove(0)
            };
            StatusCode::from_u16(code).unwrap()
        }
        let router = Router::new()
            .route("/push", post(push))
            .with_state(receiver.clone());
        let base = serve(router).await;
        (receiver, format!("{base}/push"))
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub async fn wait_for(&self, n: usize) {
        for _ in 0..300 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("push receiver got {} requests, wanted {n}", self.count());
    }
}
