//! The sign-up key endpoints and the buyer page. Google publishes the sign-up JWT's keys at its
//! `iss` as `{kid: PEM certificate}` (S2; also as a JWKS at `.../jwk/...`, S14). The buyer page
//! stands in for the Google Cloud console: after a purchase the browser POSTs the JWT as the
//! form field `x-gcp-marketplace-token` to the vendor's sign-up URL (S1, S2; every reference
//! implementation reads a form field, S9-S11).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Form, Json,
    extract::State,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde_json::{Value, json};
use time::Duration;

use super::{
    Shared,
    buyer::{self, CancellationPolicy, PurchaseRequest},
};

/// `GET /robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com`.
pub(crate) async fn x509(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let keys = &shared.keys;
    let map = json!({ keys.signup.kid.clone(): keys.signup_certificate });
    crate::fuzz_seed("gcp_key_map", map.to_string().as_bytes());
    Json(map)
}

/// `GET /robot/v1/metadata/jwk/cloud-commerce-partner@system.gserviceaccount.com`.
pub(crate) async fn jwk(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let set = json!({"keys": [shared.keys.signup.jwk()]});
    crate::fuzz_seed("gcp_key_map", set.to_string().as_bytes());
    Json(set)
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const PAGE: &str = "/sandbox/gcp/buyer";

/// `GET /sandbox/gcp/buyer`: the entitlements and what a buyer can do to them.
pub(crate) async fn buyer_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let plans: String = shared
        .config
        .plans
        .iter()
        .map(|p| format!("<option>{}</option>", esc(p)))
        .collect();
    let mut rows = String::new();
    for e in shared.lock().entitlements.values() {
        let id = esc(e.id());
        let action = |name: &str, label: &str| {
            format!(
                "<form method=post action={PAGE}/action><input type=hidden name=id value=\"{id}\">\
                 <input type=hidden name=action value={name}><button>{label}</button></form>"
            )
        };
        rows.push_str(&format!(
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}{}{}{}{}\
             <form method=post action={PAGE}/action><input type=hidden name=id value=\"{id}\">\
             <input type=hidden name=action value=change-plan><select name=plan>{plans}</select>\
             <button>Change plan</button></form></td></tr>",
            esc(e.account_id()),
            esc(&e.plan),
            esc(&e.state.name()),
            action("cancel-now", "Cancel now"),
            action("cancel-end-of-term", "Cancel at term end"),
            action("revert", "Revert cancellation"),
            action("end-term", "End term"),
            action("withdraw", "Withdraw plan change"),
            action("renew", "Renew a year"),
        ));
    }
    Html(format!(
        "<!doctype html><title>Google Cloud Marketplace sandbox</title>\
         <h1>Google Cloud Marketplace (sandbox)</h1><p><a href=/sandbox/gcp/faults>Faults</a></p>\
         <form method=post action={PAGE}/purchase><select name=plan>{plans}</select>\
         <button>Purchase and register</button></form>\
         <table><tr><th>Entitlement</th><th>Account</th><th>Plan</th><th>State</th><th></th></tr>{rows}</table>"
    ))
}

/// `POST /sandbox/gcp/buyer/purchase`: buys, then sends the browser on to the sign-up URL with
/// the JWT (an auto-submitting form, as the console's "Register" button does).
pub(crate) async fn buyer_purchase(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let plan = form.get("plan").cloned().unwrap_or_default();
    let purchase = match buyer::purchase(&shared, PurchaseRequest::plan(&plan)) {
        Ok(purchase) => purchase,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, format!("{e:#}")).into_response(),
    };
    let token = esc(&purchase.sign_up_token);
    let Some(signup_url) = &shared.config.signup_url else {
        return Html(format!(
            "<!doctype html><p>No sign-up URL is configured. x-gcp-marketplace-token:</p>\
             <pre>{token}</pre><a href={PAGE}>Back</a>"
        ))
        .into_response();
    };
    Html(format!(
        "<!doctype html><title>Registering</title><body onload=\"document.forms[0].submit()\">\
         <form method=post action=\"{}\"><input type=hidden name=x-gcp-marketplace-token \
         value=\"{token}\"><noscript><button>Register</button></noscript></form></body>",
        esc(signup_url)
    ))
    .into_response()
}

/// `POST /sandbox/gcp/buyer/action`: one of the buyer's actions on an entitlement.
pub(crate) async fn buyer_action(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let id = form.get("id").map(String::as_str).unwrap_or_default();
    let result = match form.get("action").map(String::as_str).unwrap_or_default() {
        "change-plan" => {
            let plan = form.get("plan").map(String::as_str).unwrap_or_default();
            buyer::request_plan_change(&shared, id, plan)
        }
        "withdraw" => buyer::withdraw_plan_change(&shared, id),
        "cancel-now" => buyer::cancel(&shared, id, CancellationPolicy::Immediate),
        "cancel-end-of-term" => buyer::cancel(&shared, id, CancellationPolicy::EndOfTerm),
        "revert" => buyer::revert_cancellation(&shared, id),
        "end-term" => buyer::end_term(&shared, id),
        "renew" => buyer::renew(&shared, id, shared.clock.now() + Duration::days(365)),
        other => Err(anyhow::anyhow!("unknown action {other}")),
    };
    match result {
        Ok(()) => Redirect::to(PAGE).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, format!("{e:#}")).into_response(),
    }
}
