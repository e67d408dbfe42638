//! Sandbox pages: the buyer side of the marketplace (buy, manage, marketplace-side actions) and
//! the log of every call, operation, webhook delivery and usage event.

use std::{collections::HashMap, fmt::Write};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use uuid::Uuid;

use super::{
    http::{AppState, esc, html},
    state::{MarketplaceAction, PurchaseRequest, rfc3339},
    webhook,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/sandbox/buyer") }))
        .route("/sandbox", get(|| async { Redirect::to("/sandbox/buyer") }))
        .route("/sandbox/buyer", get(buyer_page))
        .route("/sandbox/buyer/purchase", post(purchase))
        .route("/sandbox/buyer/subscriptions/{id}/{action}", post(action))
        .route("/sandbox/log", get(log_page))
        .route("/sandbox/ca.pem", get(ca_pem))
}

/// `{landing_url}?token=<URL-encoded token>` (keeps any query the landing URL already has).
pub fn landing_url(landing: &str, token: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    crate::fuzz_seed("landing_form", query.as_bytes());
    match url::Url::parse(landing) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("token", token);
            url.to_string()
        }
        Err(_) => {
            let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
            format!("{landing}?token={encoded}")
        }
    }
}

pub(super) const STYLE: &str = "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;font-size:.9em}form.inline{display:inline}nav a{margin-right:1em}.err{color:#a00}</style>";

pub(super) fn nav() -> &'static str {
    "<nav><a href=\"/sandbox/buyer\">Buyer (Azure portal)</a><a href=\"/sandbox/log\">Log</a><a href=\"/sandbox/faults\">Faults</a></nav>"
}

fn form_map(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn buyer_page(State(shared): State<AppState>) -> Response {
    let config = &shared.config;
    let mut page = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Azure Marketplace sandbox</title>{STYLE}{}<h1>Azure Marketplace sandbox: buyer</h1>",
        nav()
    );
    page.push_str("<h2>Subscribe</h2><form method=\"post\" action=\"/sandbox/buyer/purchase\"><label>Plan <select name=\"plan\">");
    for offer in &config.offers {
        for plan in &offer.plans {
            let _ = write!(
                page,
                "<option value=\"{}|{}\">{} &mdash; {}{}</option>",
                esc(&offer.id),
                esc(&plan.id),
                esc(&offer.display_name),
                esc(&plan.display_name),
                if plan.is_price_per_seat {
                    " (per seat)"
                } else {
                    ""
                }
            );
        }
    }
    page.push_str("</select></label> <label>Seats <input name=\"quantity\" type=\"number\" min=\"1\" placeholder=\"per-seat plans\"></label> <label>Buyer <select name=\"buyer\">");
    for user in &config.users {
        let _ = write!(
            page,
            "<option value=\"{}\">{} ({})</option>",
            esc(&user.object_id),
            esc(&user.display_name),
            esc(user.email_id().unwrap_or("no email"))
        );
    }
    let _ = write!(
        page,
        "</select></label> <button>Subscribe and configure account</button></form><p>Redirects to <code>{}?token=...</code>.</p>",
        esc(&config.landing_url)
    );
    page.push_str("<h2>Subscriptions</h2><table><tr><th>Subscription</th><th>Status</th><th>Plan</th><th>Seats</th><th>Term</th><th>Actions (marketplace side)</th></tr>");
    let subs = shared.lock().subscriptions.clone();
    for sub in subs.iter().rev() {
        let id = sub.id;
        let plans: String = config
            .offer(&sub.offer_id)
            .map(|o| o.plans.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|p| format!("<option value=\"{0}\">{0}</option>", esc(&p.id)))
            .collect();
        let button = |action: &str, label: &str| {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/sandbox/buyer/subscriptions/{id}/{action}\"><button>{label}</button></form>"
            )
        };
        let _ = write!(
            page,
            "<tr><td>{name}<br><small>{id}</small></td><td>{status}</td><td>{plan}</td><td>{qty}</td><td>{term}</td><td>\
             {open}\
             <form class=\"inline\" method=\"post\" action=\"/sandbox/buyer/subscriptions/{id}/change_plan\"><select name=\"plan\">{plans}</select><button>Change plan</button></form> \
             <form class=\"inline\" method=\"post\" action=\"/sandbox/buyer/subscriptions/{id}/change_quantity\"><input name=\"quantity\" type=\"number\" min=\"1\" style=\"width:5em\"><button>Change seats</button></form><br>\
             {suspend}{reinstate}{renew}{unsubscribe}</td></tr>",
            name = esc(&sub.name),
            status = sub.status.as_str(),
            plan = esc(&sub.plan_id),
            qty = sub.quantity.map(|q| q.to_string()).unwrap_or_default(),
            term = match (sub.term_start, sub.term_end) {
                (Some(s), Some(e)) => format!("{} &rarr; {}", s.date(), e.date()),
                _ => String::new(),
            },
            open = button("open", "Configure / manage account"),
            suspend = button("suspend", "Suspend (payment failed)"),
            reinstate = button("reinstate", "Reinstate"),
            renew = button("renew", "Renew"),
            unsubscribe = button("unsubscribe", "Unsubscribe"),
        );
    }
    page.push_str("</table>");
    html(StatusCode::OK, page)
}

fn error_page(message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        format!(
            "<!doctype html><meta charset=\"utf-8\"><title>Error</title>{STYLE}{}<p class=\"err\">{}</p><p><a href=\"/sandbox/buyer\">Back</a></p>",
            nav(),
            esc(message)
        ),
    )
}

async fn purchase(State(shared): State<AppState>, body: Bytes) -> Response {
    let form = form_map(&body);
    let Some((offer_id, plan_id)) = form.get("plan").and_then(|p| p.split_once('|')) else {
        return error_page("pick a plan");
    };
    let quantity = match form
        .get("quantity")
        .map(|q| q.trim())
        .filter(|q| !q.is_empty())
    {
        None => None,
        Some(q) => match q.parse::<i64>() {
            Ok(q) => Some(q),
            Err(_) => return error_page("seats must be a whole number"),
        },
    };
    let is_seat_plan = shared
        .config
        .plan(offer_id, plan_id)
        .is_some_and(|p| p.is_price_per_seat);
    let request = PurchaseRequest {
        offer_id: offer_id.to_string(),
        plan_id: plan_id.to_string(),
        quantity: quantity.filter(|_| is_seat_plan),
        buyer_object_id: form.get("buyer").cloned().unwrap_or_default(),
        subscription_name: None,
        is_test: false,
    };
    let now = shared.now();
    let ttl = time::Duration::seconds(shared.config.landing_token_ttl_secs);
    let token = {
        let mut state = shared.lock();
        match state.purchase(&shared.config, &request, now) {
            Ok(id) => state.issue_landing_token(id, now + ttl),
            Err(e) => return error_page(&e),
        }
    };
    Redirect::to(&landing_url(&shared.config.landing_url, &token)).into_response()
}

async fn action(
    State(shared): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error_page("unknown subscription");
    };
    let form = form_map(&body);
    let action = match action.as_str() {
        "open" => {
            let now = shared.now();
            let ttl = time::Duration::seconds(shared.config.landing_token_ttl_secs);
            let mut state = shared.lock();
            if state.subscription(id).is_none() {
                return error_page("unknown subscription");
            }
            let token = state.issue_landing_token(id, now + ttl);
            return Redirect::to(&landing_url(&shared.config.landing_url, &token)).into_response();
        }
        "change_plan" => {
            MarketplaceAction::ChangePlan(form.get("plan").cloned().unwrap_or_default())
        }
        "change_quantity" => match form.get("quantity").and_then(|q| q.trim().parse().ok()) {
            Some(q) => MarketplaceAction::ChangeQuantity(q),
            None => return error_page("seats must be a whole number"),
        },
        "suspend" => MarketplaceAction::Suspend,
        "reinstate" => MarketplaceAction::Reinstate,
        "renew" => MarketplaceAction::Renew,
        "unsubscribe" => MarketplaceAction::Unsubscribe,
        _ => return error_page("unknown action"),
    };
    match webhook::marketplace_action(&shared, id, &action) {
        Ok(_) => Redirect::to("/sandbox/buyer").into_response(),
        Err(e) => {
            let message = e
                .body
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .unwrap_or("the action failed")
                .to_string();
            error_page(&message)
        }
    }
}

async fn log_page(State(shared): State<AppState>) -> Response {
    let state = shared.lock();
    let mut page = format!(
        "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>Azure sandbox log</title>{STYLE}{}<h1>Azure sandbox log</h1><p>Now (sandbox clock): {}</p>",
        nav(),
        rfc3339(shared.now())
    );
    page.push_str("<h2>Operations</h2><table><tr><th>Time</th><th>Operation</th><th>Subscription</th><th>Action</th><th>Source</th><th>Status</th><th>Plan / seats</th></tr>");
    for op in state.operations.iter().rev() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{}{}</td><td>{} {}</td></tr>",
            rfc3339(op.timestamp),
            op.id,
            op.subscription_id,
            op.action.as_str(),
            op.source,
            op.status.as_str(),
            op.error_message
                .as_deref()
                .map(|m| format!(" ({})", esc(m)))
                .unwrap_or_default(),
            esc(&op.plan_id),
            op.quantity.map(|q| q.to_string()).unwrap_or_default()
        );
    }
    page.push_str("</table><h2>Webhook deliveries</h2><table><tr><th>Time</th><th>Operation</th><th>Action</th><th>Attempt</th><th>Answer</th></tr>");
    for a in state.webhook_attempts.iter().rev().take(200) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.at),
            a.operation_id,
            a.action,
            a.attempt,
            a.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| esc(a.error.as_deref().unwrap_or("error")))
        );
    }
    page.push_str("</table><h2>Usage events (accepted)</h2><table><tr><th>Effective</th><th>Resource</th><th>Plan</th><th>Dimension</th><th>Quantity</th></tr>");
    for u in state.usage.iter().rev().take(500) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rfc3339(u.effective_start_time),
            u.resource_id,
            esc(&u.plan_id),
            esc(&u.dimension),
            u.quantity
        );
    }
    page.push_str("</table><h2>Calls</h2><table><tr><th>Time</th><th>Method</th><th>Path</th><th>Status</th><th>App</th></tr>");
    for c in state.calls.iter().rev().take(500) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.at),
            esc(&c.method),
            esc(&c.path),
            c.status,
            esc(c.app_id.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</table>");
    html(StatusCode::OK, page)
}

async fn ca_pem(State(shared): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        shared.ca_pem.clone(),
    )
        .into_response()
}
