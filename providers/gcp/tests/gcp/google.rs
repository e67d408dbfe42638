//! A stand-in for Google's APIs on 127.0.0.1:0 until the gcp sandbox lands (branch
//! gcp-sandbox): the Procurement state machine of gcp.md §3 (S8), Pub/Sub pull/acknowledge,
//! Service Control check/report, the OAuth token endpoint and the key maps.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::keys;

pub const PROVIDER: &str = "DEMO-test";

#[derive(Default)]
pub struct World {
    pub accounts: HashMap<String, Value>,
    pub entitlements: HashMap<String, Value>,
    pub queue: Vec<(String, Value)>,
    pub acked: HashSet<String>,
    pub reported: HashMap<String, Value>,
    pub report_calls: usize,
    pub check_error: Option<String>,
    pub report_error: Option<Value>,
    pub refuse_tokens: bool,
    /// The token endpoint answers this status (an outage) while set.
    pub token_outage: Option<StatusCode>,
    pub tokens_issued: usize,
    /// Answer every Procurement call with this status once.
    pub fail_next: Option<StatusCode>,
    pub calls: Vec<String>,
    pub key_fetches: usize,
}

pub type Shared = Arc<Mutex<World>>;

fn google_error(status: StatusCode, name: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": name}});
    (status, Json(body)).into_response()
}

/// Checks the bearer token and the failure to inject; records the call.
#[expect(clippy::result_large_err, reason = "the early answer of a test server")]
fn gate(world: &Shared, headers: &HeaderMap, call: String) -> Result<(), Response> {
    let mut w = world.lock().unwrap();
    w.calls.push(call);
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !bearer.starts_with("Bearer tok-") {
        return Err(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "no token",
        ));
    }
    if let Some(status) = w.fail_next.take() {
        return Err(google_error(status, "INJECTED", "injected failure"));
    }
    Ok(())
}

pub fn router(world: Shared) -> Router {
    Router::new()
        .route("/token", post(token))
        .route(
            "/keys/signup",
            get(|State(w): State<Shared>| async move {
                w.lock().unwrap().key_fetches += 1;
                Json(keys::key_map(keys::commerce()))
            }),
        )
        .route(
            "/keys/oidc",
            get(|State(w): State<Shared>| async move {
                w.lock().unwrap().key_fetches += 1;
                // Google's v3 form, a JWK set (the sign-up keys above are the x509 form).
                Json(keys::jwks(keys::oidc()))
            }),
        )
        .route(
            "/v1/providers/{p}/accounts/{rest}",
            get(account).post(account_action),
        )
        .route("/v1/providers/{p}/entitlements", get(list_entitlements))
        .route(
            "/v1/providers/{p}/entitlements/{rest}",
            get(entitlement).post(entitlement_action),
        )
        .route(
            "/v1/projects/{proj}/subscriptions/{rest}",
            post(pubsub).get(subscription),
        )
        .route("/v1/services/{rest}", post(service_control))
        .with_state(world)
}

async fn token(State(world): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut w = world.lock().unwrap();
    if let Some(status) = w.token_outage {
        return (status, "unavailable").into_response();
    }
    let grant_ok = form.get("grant_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:grant-type:jwt-bearer");
    // The assertion: signed by the service account's key, for the token endpoint, one hour.
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(keys::service_account().cert_pem.as_bytes())
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    let assertion = form
        .get("assertion")
        .and_then(|a| jsonwebtoken::decode::<Value>(a, &key, &validation).ok())
        .map(|data| data.claims);
    let assertion_ok = assertion.is_some_and(|c| {
        c["iss"] == "procurement@vendor.iam.gserviceaccount.com"
            && c["aud"].as_str().is_some_and(|a| a.ends_with("/token"))
            && c["scope"] == "https://www.googleapis.com/auth/cloud-platform"
            && c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0) <= 3600
    });
    if w.refuse_tokens || !grant_ok || !assertion_ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    w.tokens_issued += 1;
    let token = format!("tok-{}", w.tokens_issued);
    Json(json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})).into_response()
}

#[expect(clippy::result_large_err, reason = "the early answer of a test server")]
fn provider_ok(p: &str) -> Result<(), Response> {
    if p == PROVIDER {
        Ok(())
    } else {
        Err(google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        ))
    }
}

async fn account(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gate(&world, &headers, format!("GET account {id}")).and(provider_ok(&p)) {
        return r;
    }
    match world.lock().unwrap().accounts.get(&id) {
        Some(a) => Json(a.clone()).into_response(),
        None => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such account"),
    }
}

async fn account_action(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((p, rest)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = gate(&world, &headers, format!("POST account {rest}")).and(provider_ok(&p)) {
        return r;
    }
    let Some(id) = rest.strip_suffix(":approve") else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    let mut w = world.lock().unwrap();
    let Some(account) = w.accounts.get_mut(id) else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such account");
    };
    if body["approvalName"] != "signup" {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "ambiguous approval",
        );
    }
    account["approvals"] = json!([{"name": "signup", "state": "APPROVED"}]);
    Json(json!({})).into_response()
}

async fn list_entitlements(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&world, &headers, "LIST entitlements".into()).and(provider_ok(&p)) {
        return r;
    }
    let w = world.lock().unwrap();
    // Only the `account="<id>"` form of the filter grammar is needed here.
    let account = query
        .get("filter")
        .and_then(|f| f.strip_prefix("account=\""))
        .and_then(|f| f.strip_suffix('"'))
        .map(|id| format!("providers/{PROVIDER}/accounts/{id}"));
    let list: Vec<&Value> = w
        .entitlements
        .values()
        .filter(|e| account.as_ref().is_none_or(|a| e["account"] == a.as_str()))
        .collect();
    Json(json!({"entitlements": list})).into_response()
}

async fn entitlement(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gate(&world, &headers, format!("GET entitlement {id}")).and(provider_ok(&p)) {
        return r;
    }
    match world.lock().unwrap().entitlements.get(&id) {
        Some(e) => Json(e.clone()).into_response(),
        None => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such entitlement"),
    }
}

async fn entitlement_action(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((p, rest)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = gate(&world, &headers, format!("POST entitlement {rest}")).and(provider_ok(&p))
    {
        return r;
    }
    let Some((id, verb)) = rest.split_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    let mut w = world.lock().unwrap();
    let accounts = w.accounts.clone();
    let Some(e) = w.entitlements.get_mut(id) else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such entitlement");
    };
    let state = e["state"].as_str().unwrap_or("").to_owned();
    let wrong = || {
        google_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            "wrong state",
        )
    };
    match verb {
        "approve" => {
            let account_id = e["account"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let approved = accounts
                .get(&account_id)
                .is_some_and(|a| a["approvals"][0]["state"] == "APPROVED");
            if state != "ENTITLEMENT_ACTIVATION_REQUESTED" || !approved {
                return wrong();
            }
            e["state"] = json!("ENTITLEMENT_ACTIVE");
        }
        "approvePlanChange" | "rejectPlanChange" => {
            if state != "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"
                || body["pendingPlanName"] != e["newPendingPlan"]
            {
                return wrong();
            }
            if verb == "approvePlanChange" {
                e["plan"] = e["newPendingPlan"].clone();
            }
            e["newPendingPlan"] = json!("");
            e["state"] = json!("ENTITLEMENT_ACTIVE");
        }
        _ => return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method"),
    }
    Json(json!({})).into_response()
}

async fn subscription(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((proj, sub)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gate(&world, &headers, "GET subscription".into()) {
        return r;
    }
    Json(json!({"name": format!("projects/{proj}/subscriptions/{sub}")})).into_response()
}

async fn pubsub(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((_proj, rest)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = gate(&world, &headers, format!("POST {rest}")) {
        return r;
    }
    let mut w = world.lock().unwrap();
    if rest.ends_with(":pull") {
        let max = body["maxMessages"].as_u64().unwrap_or(1) as usize;
        let acked = w.acked.clone();
        let messages: Vec<Value> = w
            .queue
            .iter()
            .filter(|(ack, _)| !acked.contains(ack))
            .take(max)
            .map(|(ack, message)| json!({"ackId": ack, "message": message}))
            .collect();
        return Json(json!({"receivedMessages": messages})).into_response();
    }
    for id in body["ackIds"].as_array().into_iter().flatten() {
        w.acked.insert(id.as_str().unwrap_or("").to_owned());
    }
    Json(json!({})).into_response()
}

async fn service_control(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(rest): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = gate(&world, &headers, format!("POST {rest}")) {
        return r;
    }
    let mut w = world.lock().unwrap();
    if rest.ends_with(":check") {
        let consumer = &body["operation"]["consumerId"];
        let known = w
            .entitlements
            .values()
            .any(|e| &e["usageReportingId"] == consumer);
        let code = w
            .check_error
            .clone()
            .or((!known).then(|| "CONSUMER_INVALID".to_owned()));
        let errors: Vec<Value> = code
            .into_iter()
            .map(|c| json!({"code": c, "detail": "fake"}))
            .collect();
        return Json(
            json!({"checkErrors": errors, "operationId": body["operation"]["operationId"]}),
        )
        .into_response();
    }
    w.report_calls += 1;
    let mut errors = Vec::new();
    for op in body["operations"].as_array().into_iter().flatten() {
        let id = op["operationId"].as_str().unwrap_or("").to_owned();
        if let Some(status) = w.report_error.take() {
            errors.push(json!({"operationId": id, "status": status}));
            continue;
        }
        // An identical resend of an operation is a no-op (gcp.md §4 [U]); other content under
        // the same id is refused as the sandbox does (ALREADY_EXISTS).
        match w.reported.get(&id) {
            Some(first) if first != op => {
                errors.push(
                    json!({"operationId": id, "status": {"code": 6, "message": "other content"}}),
                );
            }
            Some(_) => {}
            None => {
                w.reported.insert(id, op.clone());
            }
        }
    }
    Json(json!({"reportErrors": errors, "serviceConfigId": "cfg-1"})).into_response()
}
