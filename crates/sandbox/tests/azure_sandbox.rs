//! Azure sandbox over HTTP(S): Entra tokens, every Fulfillment and Metering operation with their
//! error statuses, webhooks, the sign-in flow and the buyer pages. Every marketplace response is
//! validated against Microsoft's OpenAPI files (vendored in tests/openapi, MIT).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use marketlink_core::clock::{Clock, ManualClock, SystemClock};
use marketlink_sandbox::azure::{
    AzureSandbox, AzureSandboxConfig, AzureSandboxHandle, MarketplaceAction, PurchaseRequest,
    WebhookTokenVersion,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const API: &str = "api-version=2018-08-31";

// ------------------------------------------------------------------ OpenAPI validation

/// Loads a vendored OpenAPI file and converts its schemas to JSON Schema 2020-12.
fn load_spec(name: &str) -> Value {
    let path = format!("{}/tests/openapi/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// OpenAPI 3.0 → JSON Schema: `nullable` becomes a `null` type, `x-` keys go, and objects with
/// `properties` refuse unknown keys (so a misspelt field fails instead of passing silently).
fn convert(node: &Value) -> Value {
    match node {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if k.starts_with("x-") || k == "nullable" || k == "example" {
                    continue;
                }
                let v = if k == "properties" {
                    Value::Object(
                        v.as_object()
                            .unwrap()
                            .iter()
                            .map(|(name, schema)| (name.clone(), convert(schema)))
                            .collect(),
                    )
                } else {
                    convert(v)
                };
                out.insert(k.clone(), v);
            }
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type")
            {
                out.insert("type".into(), json!([t, "null"]));
            }
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                out.insert("additionalProperties".into(), json!(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(convert).collect()),
        other => other.clone(),
    }
}

struct Specs {
    saas: Value,
    metering: Value,
}

impl Specs {
    fn load() -> Self {
        Self {
            saas: load_spec("saasapi.v2.json"),
            metering: load_spec("meteringapi.v1.json"),
        }
    }

    /// Checks `status` is documented for the operation and `body` matches its schema.
    fn check(&self, api_path: &str, method: &str, status: u16, body: &Value) {
        let (spec, path) = if let Some(p) = api_path.strip_prefix("/saas") {
            (&self.saas, format!("/saas{p}"))
        } else {
            (&self.metering, api_path.to_string())
        };
        let op = &spec["paths"][&path][method];
        assert!(op.is_object(), "{method} {path} is not in the OpenAPI file");
        // Documented on Microsoft's fulfillment API page ("Another operation is in progress on
        // the resource") but missing from the OpenAPI file.
        if (path.as_str(), method, status) == ("/saas/subscriptions/{subscriptionId}", "patch", 409)
        {
            assert!(body["error"]["code"].is_string(), "{body}");
            return;
        }
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path}: status {status} is not documented"
        );
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return;
        }
        let mut root = convert(schema);
        root.as_object_mut().unwrap().insert(
            "components".into(),
            json!({"schemas": convert(&spec["components"]["schemas"])}),
        );
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: body does not match the OpenAPI schema: {errors:#?}\n{body:#}"
        );
    }
}

// ------------------------------------------------------------------ webhook receiver

/// (Authorization header, body) of each webhook call received.
type Calls = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
struct Receiver {
    calls: Calls,
    /// Statuses to answer with, in order; 200 once exhausted.
    script: Arc<Mutex<Vec<u16>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.calls.lock().unwrap().push((auth, body));
    let mut script = r.script.lock().unwrap();
    let status = if script.is_empty() {
        200
    } else {
        script.remove(0)
    };
    axum::http::StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/azure/webhook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/azure/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn script(&self, statuses: &[u16]) {
        *self.script.lock().unwrap() = statuses.to_vec();
    }

    fn calls(&self) -> Vec<(Option<String>, Value)> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until a webhook for `operation` arrived.
    async fn wait_for(&self, operation: Uuid) -> (Option<String>, Value) {
        for _ in 0..500 {
            if let Some(call) = self
                .calls()
                .into_iter()
                .find(|(_, b)| b["id"] == json!(operation))
            {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no webhook for operation {operation}");
    }
}

// ------------------------------------------------------------------ harness

struct T {
    sandbox: AzureSandboxHandle,
    clock: ManualClock,
    http: reqwest::Client,
    specs: Specs,
    receiver: Receiver,
}

impl T {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut AzureSandboxConfig)) -> Self {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url)
    }

    async fn token_for(&self, client_id: &str, secret: &str, tenant: &str) -> String {
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

    async fn token(&self) -> String {
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
    async fn call(
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
        // 401 is the sandbox's answer for a bad token (the spec documents 403 for it).
        if status != StatusCode::UNAUTHORIZED {
            self.specs.check(
                spec_path,
                &method.as_str().to_lowercase(),
                status.as_u16(),
                &body,
            );
        }
        (status, headers, body)
    }

    async fn buy(&self, plan: &str, quantity: Option<i64>, buyer: usize) -> (Uuid, String) {
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
    async fn subscribed(&self, token: &str, plan: &str, quantity: Option<i64>) -> Uuid {
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

    async fn op_status(&self, op: Uuid) -> String {
        self.sandbox.operation(op).await.unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn wait_op(&self, op: Uuid, status: &str) {
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
    async fn verify_via_discovery(&self, tenant: &str, token: &str, audience: &str) -> Value {
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

fn landing_token_from(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

// ------------------------------------------------------------------ Entra

#[tokio::test]
async fn entra_discovery_jwks_and_client_credentials() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let tid = &c.publisher_tenant_id;

    let discovery: Value = t
        .http
        .get(t.url(&format!("/{tid}/v2.0/.well-known/openid-configuration")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], json!(t.sandbox.issuer_v2(tid)));
    assert_eq!(
        discovery["token_endpoint"],
        json!(t.url(&format!("/{tid}/oauth2/v2.0/token")))
    );
    let common: Value = t
        .http
        .get(t.url("/common/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        common["issuer"]
            .as_str()
            .unwrap()
            .ends_with("/{tenantid}/v2.0")
    );
    let jwks: Value = t
        .http
        .get(t.url("/common/discovery/v2.0/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    let unknown = t
        .http
        .get(t.url("/99999999-9999-4999-8999-999999999999/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);

    // v2 client credentials.
    let token = t.token().await;
    let claims = {
        let key = &jwks["keys"][0];
        let decoding = DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["20e940b3-4c77-4b0b-9a53-9e16a1b010a7"]);
        v.set_issuer(&[format!("https://sts.windows.net/{tid}/")]);
        jsonwebtoken::decode::<Value>(&token, &decoding, &v)
            .unwrap()
            .claims
    };
    assert_eq!(claims["appid"], json!(c.publisher_app_id));
    assert_eq!(claims["tid"], json!(tid));
    assert_eq!(claims["ver"], "1.0");

    // v1 endpoint with resource= and client_secret_basic-free form; numbers are strings.
    let v1: Value = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.publisher_app_id.as_str()),
            ("client_secret", c.publisher_app_secret.expose()),
            ("resource", "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["expires_in"], "3600");
    assert_eq!(v1["resource"], "20e940b3-4c77-4b0b-9a53-9e16a1b010a7");
    assert!(v1["access_token"].is_string());

    // Basic auth works too.
    let basic = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .basic_auth(&c.publisher_app_id, Some(c.publisher_app_secret.expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    // Errors.
    let err = |id: &str, secret: &str, scope: &str, tenant: &str| {
        let t = &t;
        let (id, secret, scope, tenant) = (
            id.to_owned(),
            secret.to_owned(),
            scope.to_owned(),
            tenant.to_owned(),
        );
        async move {
            let r = t
                .http
                .post(t.url(&format!("/{tenant}/oauth2/v2.0/token")))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("scope", &scope),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let scope = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default";
    assert_eq!(
        err(&c.publisher_app_id, "wrong", scope, tid).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    assert_eq!(
        err("nobody", "x", scope, tid).await,
        (StatusCode::BAD_REQUEST, "unauthorized_client".into())
    );
    assert_eq!(
        err(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            "https://graph.microsoft.com/.default",
            tid
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
    assert_eq!(
        err(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            "20e940b3-4c77-4b0b-9a53-9e16a1b010a7",
            tid
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
    assert_eq!(
        err(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            scope,
            &c.other_apps[0].tenant_id
        )
        .await,
        (StatusCode::BAD_REQUEST, "unauthorized_client".into())
    );
    let no_grant = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .form(&[("client_id", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_grant.status(), 400);
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn sign_in_flow_pkce_id_token_and_graph_me() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let redirect = "http://127.0.0.1:8080/azure/signin-callback";
    let verifier = "a-very-long-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let params = [
        ("client_id", c.publisher_app_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", redirect),
        ("scope", "openid profile email offline_access User.Read"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // The sign-in page lists the test users of every tenant for `common`.
    let page = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for user in &c.users {
        assert!(
            page.contains(&user.display_name),
            "{} missing from the sign-in page",
            user.display_name
        );
    }
    // Only tenant A's users for tenant A.
    let tenant_a = &c.users[0].tenant_id;
    let page_a = t
        .http
        .get(t.url(&format!("/{tenant_a}/oauth2/v2.0/authorize")))
        .query(&params)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page_a.contains(&c.users[2].display_name));
    // Bad requests.
    let bad_client = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", "nope"),
            ("response_type", "code"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_client.status(), 400);
    let plain = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", c.publisher_app_id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("code_challenge", "x"),
            ("code_challenge_method", "plain"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 302);
    assert!(
        plain.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );

    let mut expected = HashMap::new();
    for (i, user) in c.users.iter().enumerate() {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("user", &user.object_id));
        let r = t
            .http
            .post(t.url("/common/oauth2/v2.0/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect));
        let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st-123");
        let code = q["code"].clone();

        if i == 0 {
            // Wrong verifier: refused, and the code is spent.
            let r = t
                .http
                .post(t.url("/common/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("client_id", c.publisher_app_id.as_str()),
                    ("client_secret", c.publisher_app_secret.expose()),
                    ("code_verifier", "wrong"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_grant");
            let r = t
                .http
                .post(t.url("/common/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("client_id", c.publisher_app_id.as_str()),
                    ("client_secret", c.publisher_app_secret.expose()),
                    ("code_verifier", verifier),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "a code is single use");
            continue;
        }
        let r = t
            .http
            .post(t.url("/common/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("client_id", c.publisher_app_id.as_str()),
                ("client_secret", c.publisher_app_secret.expose()),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tokens: Value = r.json().await.unwrap();
        let id_token = tokens["id_token"].as_str().unwrap();
        let claims = t
            .verify_via_discovery(&user.tenant_id, id_token, &c.publisher_app_id)
            .await;
        assert_eq!(claims["nonce"], "n-456");
        assert_eq!(claims["oid"], json!(user.object_id));
        assert_eq!(claims["tid"], json!(user.tenant_id));
        assert_eq!(
            claims.get("email").cloned(),
            user.mail.clone().map(Value::from)
        );
        let me: Value = t
            .http
            .get(t.url("/v1.0/me"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        expected.insert(user.object_id.clone(), me);
    }
    // Alice again (her first code was spent on the failure cases), through the tenant authority.
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("user", &c.users[0].object_id));
    let r = t
        .http
        .post(t.url(&format!("/{tenant_a}/oauth2/v2.0/authorize")))
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: Value = t
        .http
        .post(t.url(&format!("/{tenant_a}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("client_id", c.publisher_app_id.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = t
        .http
        .get(t.url("/v1.0/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    expected.insert(c.users[0].object_id.clone(), me);

    assert_eq!(
        expected[&c.users[0].object_id]["mail"],
        "alice@tailspin.example"
    );
    assert_eq!(expected[&c.users[1].object_id]["mail"], Value::Null);
    assert_eq!(
        expected[&c.users[1].object_id]["userPrincipalName"],
        "bob@tailspin.onmicrosoft.com"
    );
    assert_eq!(expected[&c.users[2].object_id]["mail"], Value::Null);
    assert_eq!(
        expected[&c.users[2].object_id]["userPrincipalName"],
        Value::Null
    );

    // A marketplace (app-only, wrong audience) token and no token on /me: 401.
    let app_token = t.token().await;
    assert_eq!(
        t.http
            .get(t.url("/v1.0/me"))
            .bearer_auth(&app_token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        t.http.get(t.url("/v1.0/me")).send().await.unwrap().status(),
        401
    );
    t.sandbox.shutdown().await;
}

// ------------------------------------------------------------------ Fulfillment

#[tokio::test]
async fn fulfillment_life_cycle_over_http() {
    let t = T::start().await;
    let token = t.token().await;
    let tok = Some(token.as_str());

    // Buy through the handle; the landing URL carries the URL-encoded token.
    let purchase = t
        .sandbox
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "pro".into(),
            quantity: Some(5),
            buyer_object_id: t.sandbox.config().users[1].object_id.clone(),
            subscription_name: Some("Tailspin analytics".into()),
            is_test: false,
        })
        .await
        .unwrap();
    let decoded = landing_token_from(&purchase.landing_url);
    assert_eq!(decoded, purchase.token);
    let id = purchase.subscription_id;

    let (status, headers, body) = t
        .call(
            Method::POST,
            "/saas/subscriptions/resolve",
            "/saas/subscriptions/resolve",
            tok,
            None,
            &[
                ("x-ms-marketplace-token", &decoded),
                ("x-ms-requestid", "11111111-2222-4333-8444-555555555555"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-ms-requestid"],
        "11111111-2222-4333-8444-555555555555"
    );
    assert!(headers.contains_key("x-ms-correlationid"));
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["planId"], "pro");
    assert_eq!(body["quantity"], 5);
    assert_eq!(
        body["subscription"]["saasSubscriptionStatus"],
        "PendingFulfillmentStart"
    );
    assert_eq!(
        body["subscription"]["purchaser"]["emailId"],
        "bob@tailspin.onmicrosoft.com"
    );

    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Tailspin analytics");

    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/listAvailablePlans"),
            "/saas/subscriptions/{subscriptionId}/listAvailablePlans",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let plans: Vec<&str> = body["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["planId"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["basic", "pro"]);

    // Activate: wrong plan / quantity 400, then 200, then again 400.
    let activate_path = format!("/saas/subscriptions/{id}/activate");
    let activate = |body: Value| {
        t.call(
            Method::POST,
            &activate_path,
            "/saas/subscriptions/{subscriptionId}/activate",
            tok,
            Some(body),
            &[],
        )
    };
    assert_eq!(activate(json!({"planId": "basic"})).await.0, 400);
    assert_eq!(
        activate(json!({"planId": "pro", "quantity": 6})).await.0,
        400
    );
    assert_eq!(activate(json!({"quantity": 5})).await.0, 400);
    assert_eq!(
        activate(json!({"planId": "pro", "quantity": 5})).await.0,
        200
    );
    assert_eq!(
        activate(json!({"planId": "pro", "quantity": 5})).await.0,
        400
    );
    let sub = t.sandbox.subscription(id).await.unwrap();
    assert_eq!(sub["saasSubscriptionStatus"], "Subscribed");
    assert!(sub["term"]["startDate"].is_string() && sub["term"]["endDate"].is_string());

    // List (with a second subscription).
    let _ = t.buy("basic", None, 0).await;
    let (status, _, body) = t
        .call(
            Method::GET,
            "/saas/subscriptions",
            "/saas/subscriptions/",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 2);
    assert!(body.get("@nextLink").is_none());

    // PATCH quantity → 202 + Operation-Location → Succeeded, Partner webhook.
    let (status, headers, _) = t
        .call(
            Method::PATCH,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(json!({"quantity": 8})),
            &[],
        )
        .await;
    assert_eq!(status, 202);
    let location = headers["operation-location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!(
        "{}/api/saas/subscriptions/{id}/operations/",
        t.sandbox.base_url
    )));
    assert!(location.ends_with("?api-version=2018-08-31"));
    let op: Uuid = location
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations/{op}"),
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "Succeeded");
    assert_eq!(body["action"], "ChangeQuantity");
    assert_eq!(body["quantity"], 8);
    let (_, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["operationRequestSource"], "Partner");
    assert_eq!(hook["subscription"]["quantity"], 8);

    // PATCH plan.
    let (status, _, _) = t
        .call(
            Method::PATCH,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(json!({"planId": "basic"})),
            &[],
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["planId"], "basic");

    // Pending operations: none left.
    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations"),
            "/saas/subscriptions/{subscriptionId}/operations",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["operations"], json!([]));

    // DELETE → 202, Unsubscribed; activate is then 404 and resolve still works.
    let (status, headers, _) = t
        .call(
            Method::DELETE,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202);
    assert!(headers.contains_key("operation-location"));
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Unsubscribed"
    );
    assert_eq!(activate(json!({"planId": "basic"})).await.0, 404);
    let (status, _, _) = t
        .call(
            Method::DELETE,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, body) = t
        .call(
            Method::POST,
            "/saas/subscriptions/resolve",
            "/saas/subscriptions/resolve",
            tok,
            None,
            &[("x-ms-marketplace-token", &decoded)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["subscription"]["saasSubscriptionStatus"],
        "Unsubscribed"
    );
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn fulfillment_error_statuses() {
    let t = T::start_with(|c| c.change_ack_timeout_ms = 5_000).await;
    let token = t.token().await;
    let tok = Some(token.as_str());
    let (id, landing) = t.buy("pro", Some(3), 0).await;
    let get = |token: Option<String>| {
        let t = &t;
        async move {
            t.call(
                Method::GET,
                &format!("/saas/subscriptions/{id}"),
                "/saas/subscriptions/{subscriptionId}",
                token.as_deref(),
                None,
                &[],
            )
            .await
        }
    };

    // 401: none, garbage, tampered, wrong audience (Graph token), expired.
    let (status, headers, body) = get(None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["x-ms-error-response"], "true");
    assert!(body["error"]["code"].is_string());
    assert_eq!(get(Some("not-a-jwt".into())).await.0, 401);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(get(Some(tampered)).await.0, 401);
    assert_eq!(
        get(Some(t.sandbox.mint_webhook_token().unwrap())).await.0,
        401,
        "webhook token has the publisher app as aud"
    );
    // 403: a valid token of another publisher's app.
    let other = &t.sandbox.config().other_apps[0];
    let other_token = t
        .token_for(
            &other.client_id,
            other.client_secret.expose(),
            &other.tenant_id,
        )
        .await;
    assert_eq!(get(Some(other_token)).await.0, 403);
    // api-version.
    let r = t
        .http
        .get(t.url(&format!("/api/saas/subscriptions/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .get(t.url(&format!(
            "/api/saas/subscriptions/{id}?api-version=2099-01-01"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // 404s.
    let missing = Uuid::new_v4();
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{missing}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            "/saas/subscriptions/not-a-guid",
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{missing}/listAvailablePlans"),
            "/saas/subscriptions/{subscriptionId}/listAvailablePlans",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::POST,
            &format!("/saas/subscriptions/{missing}/activate"),
            "/saas/subscriptions/{subscriptionId}/activate",
            tok,
            Some(json!({"planId": "pro"})),
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &format!("/saas/subscriptions/{missing}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(json!({"planId": "pro"})),
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("/saas/subscriptions/{missing}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{missing}/operations"),
            "/saas/subscriptions/{subscriptionId}/operations",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations/{missing}"),
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &format!("/saas/subscriptions/{id}/operations/{missing}"),
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            tok,
            Some(json!({"status": "Success"})),
            &[]
        )
        .await
        .0,
        404
    );

    // Resolve 400s: missing header, unknown token, expired token (24 h).
    let resolve = |token: Option<String>| {
        let t = &t;
        async move {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|v| vec![("x-ms-marketplace-token", v)])
                .unwrap_or_default();
            t.call(
                Method::POST,
                "/saas/subscriptions/resolve",
                "/saas/subscriptions/resolve",
                Some(t.token().await.as_str()),
                None,
                &headers,
            )
            .await
        }
    };
    assert_eq!(resolve(None).await.0, 400);
    assert_eq!(resolve(Some("bm9wZQ==".into())).await.0, 400);
    assert_eq!(resolve(Some(landing.clone())).await.0, 200);

    // PATCH 400s before activation, bad bodies.
    let patch_path = format!("/saas/subscriptions/{id}");
    let patch = |body: Value| {
        t.call(
            Method::PATCH,
            &patch_path,
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(body),
            &[],
        )
    };
    assert_eq!(
        patch(json!({"quantity": 4})).await.0,
        400,
        "not Subscribed yet"
    );
    let active = t.subscribed(&token, "pro", Some(2)).await;
    let active_path = format!("/saas/subscriptions/{active}");
    let patch = |body: Value| {
        t.call(
            Method::PATCH,
            &active_path,
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(body),
            &[],
        )
    };
    assert_eq!(
        patch(json!({"planId": "basic", "quantity": 4})).await.0,
        400
    );
    assert_eq!(patch(json!({})).await.0, 400);
    assert_eq!(patch(json!({"planId": "pro"})).await.0, 400, "same plan");
    assert_eq!(
        patch(json!({"planId": "enterprise"})).await.0,
        400,
        "unknown plan"
    );
    assert_eq!(patch(json!({"quantity": 2})).await.0, 400, "same quantity");
    assert_eq!(patch(json!({"quantity": 501})).await.0, 400, "above max");
    let r = t
        .http
        .patch(t.url(&format!("/api/saas/subscriptions/{active}?{API}")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // 409: PATCH while a marketplace-side change is in progress; PATCH of a settled operation.
    let op = t
        .sandbox
        .marketplace_action(active, MarketplaceAction::ChangeQuantity(7))
        .await
        .unwrap();
    let (status, _, _) = patch(json!({"quantity": 9})).await;
    assert_eq!(status, 409);
    let op_path = format!("/saas/subscriptions/{active}/operations/{op}");
    let spec_op = "/saas/subscriptions/{subscriptionId}/operations/{operationId}";
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Maybe"})),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Success"})),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Failure"})),
            &[]
        )
        .await
        .0,
        409
    );

    // Expiry by the sandbox clock: the bearer token (1 h) and the landing token (24 h).
    t.clock.advance(time::Duration::hours(2));
    assert_eq!(get(Some(token.clone())).await.0, 401);
    t.clock.advance(time::Duration::hours(23));
    assert_eq!(resolve(Some(landing)).await.0, 400);
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn list_pages_with_next_link() {
    let t = T::start().await;
    let token = t.token().await;
    for _ in 0..105 {
        t.buy("basic", None, 0).await;
    }
    let (status, _, body) = t
        .call(
            Method::GET,
            "/saas/subscriptions",
            "/saas/subscriptions/",
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 100);
    let next = body["@nextLink"].as_str().unwrap();
    assert!(next.starts_with(&t.sandbox.base_url));
    let r = t.http.get(next).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    t.specs.check("/saas/subscriptions/", "get", 200, &body);
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 5);
    assert!(body.get("@nextLink").is_none());
    t.sandbox.shutdown().await;
}

// ------------------------------------------------------------------ marketplace side + webhooks

#[tokio::test]
async fn marketplace_actions_send_signed_webhooks_and_settle() {
    let t = T::start_with(|c| c.change_ack_timeout_ms = 3_000).await;
    let token = t.token().await;
    let tok = Some(token.as_str());
    let c = t.sandbox.config().clone();
    let id = t.subscribed(&token, "pro", Some(3)).await;

    // ChangePlan accepted by PATCH Success.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("basic".into()))
        .await
        .unwrap();
    let (auth, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["action"], "ChangePlan");
    assert_eq!(hook["status"], "InProgress");
    assert_eq!(hook["operationRequestSource"], "Azure");
    assert_eq!(hook["subscriptionId"], json!(id));
    assert_eq!(hook["subscription"]["planId"], "basic");
    // The webhook JWT validates against the JWKS found through discovery.
    let jwt = auth.unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let claims = t
        .verify_via_discovery(&c.publisher_tenant_id, &jwt, &c.publisher_app_id)
        .await;
    assert_eq!(claims["tid"], json!(c.publisher_tenant_id));
    assert_eq!(claims["azp"], "20e940b3-4c77-4b0b-9a53-9e16a1b010a7");
    assert_eq!(claims["ver"], "2.0");
    // The vendor confirms with GET operation, then PATCHes Success.
    let op_path = format!("/saas/subscriptions/{id}/operations/{op}");
    let spec_op = "/saas/subscriptions/{subscriptionId}/operations/{operationId}";
    let (status, _, body) = t.call(Method::GET, &op_path, spec_op, tok, None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "InProgress");
    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations"),
            "/saas/subscriptions/{subscriptionId}/operations",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["operations"][0]["id"], json!(op));
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Success"})),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(t.op_status(op).await, "Succeeded");
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["planId"], "basic");

    // ChangePlan refused by PATCH Failure: reverted.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("pro".into()))
        .await
        .unwrap();
    t.receiver.wait_for(op).await;
    let op_path = format!("/saas/subscriptions/{id}/operations/{op}");
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Failure"})),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(t.op_status(op).await, "Failed");
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["planId"], "basic");

    // ChangePlan with no answer: auto-accepted after the timeout.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("pro".into()))
        .await
        .unwrap();
    t.wait_op(op, "Succeeded").await;
    let sub = t.sandbox.subscription(id).await.unwrap();
    assert_eq!(sub["planId"], "pro");
    assert_eq!(
        sub["quantity"], 1,
        "back on a per-seat plan with the minimum seats"
    );

    // ChangeQuantity refused with a 4xx webhook answer: reverted.
    t.receiver.script(&[400]);
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(10))
        .await
        .unwrap();
    t.wait_op(op, "Failed").await;
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["quantity"], 1);

    // Conflicting and invalid marketplace actions.
    assert!(
        t.sandbox
            .marketplace_action(id, MarketplaceAction::ChangeQuantity(1))
            .await
            .is_err()
    );
    assert!(
        t.sandbox
            .marketplace_action(id, MarketplaceAction::Reinstate)
            .await
            .is_err()
    );

    // Suspend → Reinstate (auto) → Renew → Unsubscribe.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    let (_, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["status"], "Succeeded");
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Suspended"
    );
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Reinstate)
        .await
        .unwrap();
    t.receiver.wait_for(op).await;
    t.wait_op(op, "Succeeded").await;
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Subscribed"
    );
    let before = t.sandbox.subscription(id).await.unwrap()["term"]["endDate"].clone();
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Renew)
        .await
        .unwrap();
    t.receiver.wait_for(op).await;
    assert_ne!(
        t.sandbox.subscription(id).await.unwrap()["term"]["endDate"],
        before
    );
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    let (_, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["action"], "Unsubscribe");
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Unsubscribed"
    );

    // Every webhook body carries the SaaSOperation fields the spec defines.
    for (_, hook) in t.receiver.calls() {
        let mut op = hook.clone();
        for extra in ["operationRequestSource", "subscription", "purchaseToken"] {
            op.as_object_mut().unwrap().remove(extra);
        }
        t.specs.check(
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            "get",
            200,
            &op,
        );
        t.specs.check(
            "/saas/subscriptions/{subscriptionId}",
            "get",
            200,
            &hook["subscription"],
        );
    }
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn webhook_deliveries_are_retried_and_v1_tokens_offered() {
    let t = T::start_with(|c| c.webhook_token_version = WebhookTokenVersion::V1).await;
    let token = t.token().await;
    let id = t.subscribed(&token, "basic", None).await;
    t.receiver.script(&[500, 503]);
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    for _ in 0..200 {
        if t.receiver.calls().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let attempts: Vec<_> = t
        .sandbox
        .webhook_attempts()
        .await
        .into_iter()
        .filter(|a| a.operation_id == op)
        .collect();
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(500), Some(503), Some(200)]
    );
    let (auth, _) = t.receiver.calls().pop().unwrap();
    let jwt = auth.unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let jwks = t.sandbox.jwks();
    let key = &jwks["keys"][0];
    let decoding =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let c = t.sandbox.config();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[&c.publisher_app_id]);
    v.set_issuer(&[format!(
        "https://sts.windows.net/{}/",
        c.publisher_tenant_id
    )]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &decoding, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["appid"], "20e940b3-4c77-4b0b-9a53-9e16a1b010a7");
    assert_eq!(claims["ver"], "1.0");

    // A vendor that never answers: the change is failed and reverted after the retries.
    let t2 = T::start_with(|c| {
        c.webhook_url = "http://127.0.0.1:9/azure/webhook".into();
        c.webhook_max_attempts = 2;
    })
    .await;
    let token = t2.token().await;
    let id = t2.subscribed(&token, "pro", Some(2)).await;
    let op = t2
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(4))
        .await
        .unwrap();
    t2.wait_op(op, "Failed").await;
    assert_eq!(t2.sandbox.subscription(id).await.unwrap()["quantity"], 2);
    assert_eq!(t2.sandbox.webhook_attempts().await.len(), 2);
    t2.sandbox.shutdown().await;
    t.sandbox.shutdown().await;
}

// ------------------------------------------------------------------ Metering

#[tokio::test]
async fn metering_usage_events_batches_and_listing() {
    let t = T::start().await;
    let token = t.token().await;
    let tok = Some(token.as_str());
    let id = t.subscribed(&token, "basic", None).await;
    let (pending, _) = t.buy("basic", None, 0).await;
    let now = t.clock.now();
    let at = |minutes_ago: i64| {
        (now - time::Duration::minutes(minutes_ago))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let event = |resource: Uuid, dimension: &str, quantity: f64, when: String, plan: &str| json!({"resourceId": resource, "quantity": quantity, "dimension": dimension, "effectiveStartTime": when, "planId": plan});
    let post = |body: Value| {
        t.call(
            Method::POST,
            "/usageEvent",
            "/usageEvent",
            tok,
            Some(body),
            &[],
        )
    };

    // Accepted, then a duplicate in the same hour with the accepted message.
    let hour_start = now
        .replace_minute(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let in_hour = |m: i64| {
        (hour_start + time::Duration::minutes(m))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let prev_hour = |m: i64| {
        (hour_start - time::Duration::minutes(60 - m))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (status, _, accepted) = post(event(id, "api_calls", 12.5, prev_hour(5), "basic")).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "Accepted");
    assert_eq!(accepted["quantity"], 12.5);
    let (status, headers, dup) = post(event(id, "api_calls", 3.0, prev_hour(40), "basic")).await;
    assert_eq!(status, 409);
    assert_eq!(headers["x-ms-error-response"], "true");
    assert_eq!(dup["code"], "Conflict");
    assert_eq!(
        dup["additionalInfo"]["acceptedMessage"]["usageEventId"],
        accepted["usageEventId"]
    );
    assert_eq!(dup["additionalInfo"]["acceptedMessage"]["quantity"], 12.5);
    // 400s: expired (> 24 h), unknown dimension, wrong plan, zero quantity, pending subscription,
    // missing field, unknown resource, future.
    for (body, code) in [
        (event(id, "api_calls", 1.0, at(25 * 60), "basic"), "Expired"),
        (
            event(id, "storage_gb", 1.0, at(1), "basic"),
            "InvalidDimension",
        ),
        (event(id, "api_calls", 1.0, at(1), "pro"), "BadArgument"),
        (
            event(id, "api_calls", 0.0, at(1), "basic"),
            "InvalidQuantity",
        ),
        (
            event(pending, "api_calls", 1.0, at(1), "basic"),
            "ResourceNotActive",
        ),
        (
            json!({"quantity": 1, "dimension": "api_calls", "effectiveStartTime": at(1), "planId": "basic"}),
            "BadArgument",
        ),
        (
            event(Uuid::new_v4(), "api_calls", 1.0, at(1), "basic"),
            "ResourceNotFound",
        ),
        (
            event(id, "api_calls", 1.0, at(-120), "basic"),
            "BadArgument",
        ),
    ] {
        let (status, _, body) = post(body).await;
        assert_eq!(status, 400, "{code}: {body}");
        assert_eq!(body["code"], "BadArgument");
        assert_eq!(body["details"][0]["code"], code);
    }
    assert_eq!(
        t.call(
            Method::POST,
            "/usageEvent",
            "/usageEvent",
            None,
            Some(event(id, "api_calls", 1.0, at(1), "basic")),
            &[]
        )
        .await
        .0,
        401
    );
    let other = &t.sandbox.config().other_apps[0];
    let other_token = t
        .token_for(
            &other.client_id,
            other.client_secret.expose(),
            &other.tenant_id,
        )
        .await;
    assert_eq!(
        t.call(
            Method::POST,
            "/usageEvent",
            "/usageEvent",
            Some(&other_token),
            Some(event(id, "api_calls", 1.0, at(1), "basic")),
            &[]
        )
        .await
        .0,
        403
    );

    // Batch with every per-item status.
    let batch = json!({"request": [
        event(id, "api_calls", 4.0, in_hour(0), "basic"),
        event(id, "api_calls", 4.0, in_hour(0), "basic"),
        event(id, "api_calls", 1.0, at(30 * 60), "basic"),
        event(Uuid::new_v4(), "api_calls", 1.0, at(1), "basic"),
        event(id, "storage_gb", 1.0, at(1), "basic"),
        event(id, "api_calls", -2.0, at(1), "basic"),
        {"resourceId": id, "quantity": 1, "dimension": "api_calls", "planId": "basic"},
        event(pending, "api_calls", 1.0, at(1), "basic"),
    ]});
    let (status, _, body) = t
        .call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            tok,
            Some(batch),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 8);
    let statuses: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "Accepted",
            "Duplicate",
            "Expired",
            "ResourceNotFound",
            "InvalidDimension",
            "InvalidQuantity",
            "BadArgument",
            "ResourceNotActive"
        ]
    );
    assert_eq!(body["result"][1]["error"]["code"], "Conflict");
    assert_eq!(
        body["result"][1]["error"]["additionalInfo"]["acceptedMessage"]["usageEventId"],
        body["result"][0]["usageEventId"]
    );
    // Batch bounds.
    let too_many: Vec<Value> = (0..26)
        .map(|_| event(id, "api_calls", 1.0, at(1), "basic"))
        .collect();
    assert_eq!(
        t.call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            tok,
            Some(json!({"request": too_many})),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            tok,
            Some(json!({"request": []})),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            None,
            Some(json!({"request": []})),
            &[]
        )
        .await
        .0,
        401
    );

    // Usage after a cancellation, for the time before it, is still accepted.
    t.sandbox
        .marketplace_action(id, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    let (status, _, _) = post(event(id, "api_calls", 2.0, at(3 * 60), "basic")).await;
    assert_eq!(status, 200);

    // Listing.
    let start = (now - time::Duration::days(2)).date().to_string();
    let (status, _, rows) = t
        .call(
            Method::GET,
            &format!("/usageEvents?usageStartDate={start}"),
            "/usageEvents",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["usageResourceId"] == json!(id) && r["offerId"] == "contoso-analytics")
    );
    let (status, _, rows) = t
        .call(
            Method::GET,
            &format!("/usageEvents?usageStartDate={start}&dimension=other"),
            "/usageEvents",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows, json!([]));
    assert_eq!(
        t.call(Method::GET, "/usageEvents", "/usageEvents", tok, None, &[])
            .await
            .0,
        400
    );
    assert_eq!(
        t.call(
            Method::GET,
            "/usageEvents?usageStartDate=yesterday",
            "/usageEvents",
            tok,
            None,
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(t.sandbox.usage_events().await.len(), 3);
    t.sandbox.shutdown().await;
}

// ------------------------------------------------------------------ pages and config

#[tokio::test]
async fn buyer_page_purchases_and_acts() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let page = t.http.get(t.url("/sandbox/buyer")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("contoso-analytics|pro"));
    let r = t
        .http
        .post(t.url("/sandbox/buyer/purchase"))
        .form(&[
            ("plan", "contoso-analytics|pro"),
            ("quantity", "4"),
            ("buyer", c.users[0].object_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}?token=", c.landing_url)));
    let token = landing_token_from(&location);
    let api_token = t.token().await;
    let (status, _, body) = t
        .call(
            Method::POST,
            "/saas/subscriptions/resolve",
            "/saas/subscriptions/resolve",
            Some(&api_token),
            None,
            &[("x-ms-marketplace-token", &token)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["quantity"], 4);
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();

    // Marketplace-side actions from the page.
    let r = t
        .http
        .post(t.url(&format!("/sandbox/buyer/subscriptions/{id}/suspend")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "cannot suspend before activation");
    let (status, _, _) = t
        .call(
            Method::POST,
            &format!("/saas/subscriptions/{id}/activate"),
            "/saas/subscriptions/{subscriptionId}/activate",
            Some(&api_token),
            Some(json!({"planId": "pro", "quantity": 4})),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let r = t
        .http
        .post(t.url(&format!(
            "/sandbox/buyer/subscriptions/{id}/change_quantity"
        )))
        .form(&[("quantity", "6")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["quantity"], 6);
    let ops = t.sandbox.operations(id).await;
    let op: Uuid = ops.last().unwrap()["id"].as_str().unwrap().parse().unwrap();
    t.receiver.wait_for(op).await;
    t.wait_op(op, "Succeeded").await;
    let r = t
        .http
        .post(t.url(&format!("/sandbox/buyer/subscriptions/{id}/suspend")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Suspended"
    );
    let r = t
        .http
        .post(t.url(&format!("/sandbox/buyer/subscriptions/{id}/open")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let again = landing_token_from(r.headers()["location"].to_str().unwrap());
    assert_ne!(again, token);

    let log = t.http.get(t.url("/sandbox/log")).send().await.unwrap();
    assert_eq!(log.status(), 200);
    assert!(
        log.text()
            .await
            .unwrap()
            .contains("/api/saas/subscriptions/resolve")
    );
    let ca = t
        .http
        .get(t.url("/sandbox/ca.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ca, t.sandbox.ca_pem);
    assert!(t.sandbox.call_log().await.len() > 5);
    t.sandbox.shutdown().await;
}

#[test]
fn scenario_toml_matches_defaults_and_is_validated() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/azure-default.toml"
    ))
    .unwrap();
    let parsed = AzureSandboxConfig::from_toml_str(&text).unwrap();
    let default = AzureSandboxConfig::default();
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        serde_json::to_value(&default).unwrap()
    );
    let partial =
        AzureSandboxConfig::from_toml_str("webhook_url = \"http://localhost:9000/hook\"").unwrap();
    assert_eq!(partial.webhook_url, "http://localhost:9000/hook");
    assert_eq!(partial.offers.len(), 1);
    assert!(AzureSandboxConfig::from_toml_str("offers = []").is_err());
    assert!(AzureSandboxConfig::from_toml_str("no_such_key = 1").is_err());
    assert!(!format!("{default:?}").contains("sandbox-publisher-secret"));
}

#[test]
#[should_panic(expected = "does not match the OpenAPI schema")]
fn openapi_check_rejects_a_misspelt_field() {
    Specs::load().check(
        "/saas/subscriptions/{subscriptionId}",
        "get",
        200,
        &json!({"saasSubscriptionstatus": "Subscribed"}),
    );
}

#[test]
#[should_panic(expected = "does not match the OpenAPI schema")]
fn openapi_check_rejects_a_bad_format_and_enum() {
    Specs::load().check(
        "/usageEvent",
        "post",
        200,
        &json!({"usageEventId": "nope", "status": "Fine"}),
    );
}

#[test]
#[should_panic(expected = "is not documented")]
fn openapi_check_rejects_an_undocumented_status() {
    Specs::load().check("/saas/subscriptions/resolve", "post", 409, &Value::Null);
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let t = T::start().await;
    let token = t.token().await;
    let big = "x".repeat(300 * 1024);
    let r = t
        .http
        .post(t.url(&format!("/api/usageEvent?{API}")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = t
        .http
        .post(t.url(&format!("/api/batchUsageEvent?{API}")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .post(t.url(&format!("/api/usageEvent?{API}")))
        .bearer_auth(&token)
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let c = t.sandbox.config();
    let r = t
        .http
        .post(t.url(&format!("/{}/oauth2/v2.0/token", c.publisher_tenant_id)))
        .body(vec![0xff, b'=', 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .post(t.url("/common/oauth2/v2.0/authorize"))
        .body("%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    t.sandbox.shutdown().await;
}
