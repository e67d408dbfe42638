//! SaaS Fulfillment API v2 (`/api/saas/...`, api-version 2018-08-31).

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Shared,
    auth::authorize_publisher,
    config::AzureSandboxConfig,
    errors::{ApiError, fulfillment_forbidden},
    http::{API_VERSION, AppState, check_api_version, json_ok, parse_json},
    state::{
        Action, OperationStatus, RequestSource, Subscription, SubscriptionStatus, check_quantity,
        term_dates,
    },
    webhook,
};

/// Subscriptions per page of `GET /saas/subscriptions` (as documented).
const PAGE_SIZE: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/saas/subscriptions/resolve", post(resolve))
        .route("/saas/subscriptions", get(list))
        .route("/saas/subscriptions/", get(list))
        .route(
            "/saas/subscriptions/{id}",
            get(get_subscription)
                .patch(update_subscription)
                .delete(delete_subscription),
        )
        .route(
            "/saas/subscriptions/{id}/listAvailablePlans",
            get(list_plans),
        )
        .route("/saas/subscriptions/{id}/activate", post(activate))
        .route("/saas/subscriptions/{id}/operations", get(list_operations))
        .route(
            "/saas/subscriptions/{id}/operations/{op}",
            get(get_operation).patch(update_operation),
        )
}

type Q = Query<HashMap<String, String>>;

/// Common prologue: api-version and bearer token.
fn guard(
    shared: &Shared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    check_api_version(query)?;
    authorize_publisher(shared, headers, fulfillment_forbidden)?;
    Ok(())
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::not_found(format!("The {what} '{id}' was not found.")))
}

fn operation_location(shared: &Shared, sub: Uuid, op: Uuid) -> String {
    format!(
        "{}/api/saas/subscriptions/{sub}/operations/{op}?api-version={API_VERSION}",
        shared.base_url
    )
}

fn accepted(location: String) -> Response {
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("operation-location", v);
    }
    response
}

async fn resolve(
    State(shared): State<AppState>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let token = headers
        .get("x-ms-marketplace-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::fulfillment(
                StatusCode::BAD_REQUEST,
                "HeaderNotPresent",
                "The x-ms-marketplace-token header is required.",
            )
        })?;
    let now = shared.now();
    let state = shared.lock();
    let invalid = || {
        ApiError::fulfillment(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "The marketplace token is invalid or expired.",
        )
    };
    let entry = state.landing_tokens.get(token).ok_or_else(invalid)?;
    if entry.expires_at <= now {
        return Err(invalid());
    }
    let sub = state
        .subscription(entry.subscription_id)
        .ok_or_else(invalid)?;
    let mut body = json!({
        "id": sub.id,
        "subscriptionName": sub.name,
        "offerId": sub.offer_id,
        "planId": sub.plan_id,
        "subscription": sub.to_json(&shared.config.publisher_id),
    });
    if let (Some(qty), Some(obj)) = (sub.quantity, body.as_object_mut()) {
        obj.insert("quantity".into(), json!(qty));
    }
    Ok(json_ok(body))
}

async fn list(
    State(shared): State<AppState>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let start = match q.get("continuationToken") {
        None => 0,
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad_request("The continuationToken is invalid."))?,
    };
    let state = shared.lock();
    let page: Vec<Value> = state
        .subscriptions
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|s| s.to_json(&shared.config.publisher_id))
        .collect();
    let mut body = json!({ "subscriptions": page });
    let next = start + PAGE_SIZE;
    if next < state.subscriptions.len()
        && let Some(obj) = body.as_object_mut()
    {
        let token = URL_SAFE_NO_PAD.encode(next.to_string());
        obj.insert(
            "@nextLink".into(),
            json!(format!(
                "{}/api/saas/subscriptions/?continuationToken={token}&api-version={API_VERSION}",
                shared.base_url
            )),
        );
    }
    Ok(json_ok(body))
}

async fn get_subscription(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let id = parse_id(&id, "subscription")?;
    let state = shared.lock();
    let sub = state
        .subscription(id)
        .ok_or_else(|| ApiError::not_found(format!("The subscription '{id}' was not found.")))?;
    Ok(json_ok(sub.to_json(&shared.config.publisher_id)))
}

async fn list_plans(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let id = parse_id(&id, "subscription")?;
    let offer_id = shared
        .lock()
        .subscription(id)
        .map(|s| s.offer_id.clone())
        .ok_or_else(|| ApiError::not_found(format!("The subscription '{id}' was not found.")))?;
    let plans: Vec<Value> = shared
        .config
        .offer(&offer_id)
        .map(|o| o.plans.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let mut plan = json!({
                "planId": p.id,
                "displayName": p.display_name,
                "isPrivate": p.is_private,
                "description": p.description,
                "hasFreeTrials": p.has_free_trials,
                "isPricePerSeat": p.is_price_per_seat,
                "isStopSell": false,
                "market": "US",
                "planComponents": {
                    "recurrentBillingTerms": [{
                        "currency": "USD",
                        "price": p.price,
                        "termUnit": p.term_unit,
                        "termDescription": p.display_name,
                        "meteredQuantityIncluded": [],
                    }],
                    "meteringDimensions": p.dimensions.iter().map(|d| json!({
                        "id": d.id,
                        "currency": "USD",
                        "pricePerUnit": d.price_per_unit,
                        "unitOfMeasure": d.unit_of_measure,
                        "displayName": d.display_name,
                    })).collect::<Vec<_>>(),
                },
            });
            if let Some(obj) = plan.as_object_mut() {
                if let Some(min) = p.min_quantity {
                    obj.insert("minQuantity".into(), json!(min));
                }
                if let Some(max) = p.max_quantity {
                    obj.insert("maxQuantity".into(), json!(max));
                }
            }
            plan
        })
        .collect();
    Ok(json_ok(json!({ "plans": plans })))
}

/// Reads `planId` and `quantity` from a body (quantity may be a number or a numeric string).
fn plan_and_quantity(body: &Value) -> Result<(Option<String>, Option<i64>), ApiError> {
    let plan = match body.get("planId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("planId must be a string.")),
    };
    let quantity = match body.get("quantity") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| ApiError::bad_request("quantity must be an integer."))?,
        ),
        Some(Value::String(s)) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request("quantity must be an integer."))?,
        ),
        Some(_) => return Err(ApiError::bad_request("quantity must be an integer.")),
    };
    Ok((plan, quantity))
}

async fn activate(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let id = parse_id(&id, "subscription")?;
    let body = parse_json(&body)?;
    let (plan_id, quantity) = plan_and_quantity(&body)?;
    let now = shared.now();
    let mut state = shared.lock();
    let sub = state
        .subscription_mut(id)
        .ok_or_else(|| ApiError::not_found(format!("The subscription '{id}' was not found.")))?;
    match sub.status {
        SubscriptionStatus::Unsubscribed => {
            return Err(ApiError::not_found("The subscription is unsubscribed."));
        }
        SubscriptionStatus::Subscribed | SubscriptionStatus::Suspended => {
            return Err(ApiError::bad_request(format!(
                "The subscription is already {}.",
                sub.status.as_str()
            )));
        }
        SubscriptionStatus::PendingFulfillmentStart => {}
    }
    let plan_id = plan_id.ok_or_else(|| ApiError::bad_request("planId is required."))?;
    if plan_id != sub.plan_id {
        return Err(ApiError::bad_request(format!(
            "planId '{plan_id}' does not match the purchased plan."
        )));
    }
    if quantity.is_some() && quantity != sub.quantity {
        return Err(ApiError::bad_request(
            "quantity does not match the purchased quantity.",
        ));
    }
    let (start, end) = term_dates(now, &sub.term_unit);
    sub.status = SubscriptionStatus::Subscribed;
    sub.term_start = Some(start);
    sub.term_end = Some(end);
    sub.last_modified = now;
    Ok(StatusCode::OK.into_response())
}

async fn update_subscription(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let id = parse_id(&id, "subscription")?;
    let body = parse_json(&body)?;
    let (plan_id, quantity) = plan_and_quantity(&body)?;
    let now = shared.now();
    let op_id = {
        let mut state = shared.lock();
        let pending = state.has_pending_operation(id);
        let sub = state.subscription_mut(id).ok_or_else(|| {
            ApiError::not_found(format!("The subscription '{id}' was not found."))
        })?;
        check_updatable(sub, pending)?;
        let previous = Some((sub.plan_id.clone(), sub.quantity));
        let action = apply_update(&shared.config, sub, plan_id, quantity)?;
        sub.last_modified = now;
        let status = if shared.config.partner_operation_ms > 0 {
            OperationStatus::InProgress
        } else {
            OperationStatus::Succeeded
        };
        state
            .record_operation(id, action, status, RequestSource::Partner, previous, now)
            .ok_or_else(|| ApiError::not_found("subscription vanished"))?
    };
    notify_partner_change(&shared, op_id);
    if shared.config.partner_operation_ms > 0 {
        tokio::spawn(complete_partner_change(shared.clone(), op_id));
    }
    Ok(accepted(operation_location(&shared, id, op_id)))
}

/// Ends our own change after `partner_operation_ms`, then notifies it again as Succeeded.
async fn complete_partner_change(shared: AppState, op_id: Uuid) {
    let wait = std::time::Duration::from_millis(shared.config.partner_operation_ms);
    if !shared.sleep(wait).await {
        return;
    }
    let now = shared.now();
    if shared
        .lock()
        .settle_operation(op_id, true, None, false, now)
    {
        notify_partner_change(&shared, op_id);
    }
}

/// The `Partner` webhook after our own change, unless the scenario loses it
/// (`notify_partner_changes`).
fn notify_partner_change(shared: &AppState, op_id: Uuid) {
    if shared.config.notify_partner_changes {
        webhook::dispatch(shared.clone(), op_id);
    }
}

/// Only a Subscribed subscription that allows `Update` and has no operation in progress changes.
fn check_updatable(sub: &Subscription, pending: bool) -> Result<(), ApiError> {
    if sub.status != SubscriptionStatus::Subscribed {
        return Err(ApiError::bad_request(format!(
            "The subscription is {}; only Subscribed subscriptions can change.",
            sub.status.as_str()
        )));
    }
    if !sub
        .allowed_customer_operations
        .iter()
        .any(|o| o == "Update")
    {
        return Err(ApiError::bad_request("Update is not an allowed operation."));
    }
    if pending {
        return Err(ApiError::conflict(
            "Another operation is in progress on this subscription.",
        ));
    }
    Ok(())
}

/// Applies the publisher's PATCH (a new plan or a new quantity, never both) to `sub`.
fn apply_update(
    config: &AzureSandboxConfig,
    sub: &mut Subscription,
    plan_id: Option<String>,
    quantity: Option<i64>,
) -> Result<Action, ApiError> {
    match (plan_id, quantity) {
        (Some(_), Some(_)) | (None, None) => Err(ApiError::bad_request(
            "Send either planId or quantity, not both and not neither.",
        )),
        (Some(plan_id), None) => {
            let plan = config.plan(&sub.offer_id, &plan_id).ok_or_else(|| {
                ApiError::bad_request(format!("The plan '{plan_id}' is not available."))
            })?;
            if plan.id == sub.plan_id {
                return Err(ApiError::bad_request(
                    "The subscription already has this plan.",
                ));
            }
            sub.quantity = if plan.is_price_per_seat {
                Some(sub.quantity.unwrap_or(plan.min_quantity.unwrap_or(1)))
            } else {
                None
            };
            sub.plan_id = plan.id.clone();
            Ok(Action::ChangePlan)
        }
        (None, Some(quantity)) => {
            let plan = config
                .plan(&sub.offer_id, &sub.plan_id)
                .ok_or_else(|| ApiError::bad_request("The current plan is not available."))?;
            let quantity = check_quantity(plan, Some(quantity)).map_err(ApiError::bad_request)?;
            if quantity == sub.quantity {
                return Err(ApiError::bad_request(
                    "The subscription already has this quantity.",
                ));
            }
            sub.quantity = quantity;
            Ok(Action::ChangeQuantity)
        }
    }
}

async fn delete_subscription(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let id = parse_id(&id, "subscription")?;
    let now = shared.now();
    let op_id = {
        let mut state = shared.lock();
        let sub = state.subscription_mut(id).ok_or_else(|| {
            ApiError::not_found(format!("The subscription '{id}' was not found."))
        })?;
        if sub.status == SubscriptionStatus::Unsubscribed {
            return Err(ApiError::bad_request(
                "The subscription is already unsubscribed.",
            ));
        }
        if !sub
            .allowed_customer_operations
            .iter()
            .any(|o| o == "Delete")
        {
            return Err(ApiError::bad_request("Delete is not an allowed operation."));
        }
        sub.status = SubscriptionStatus::Unsubscribed;
        sub.unsubscribed_at = Some(now);
        sub.last_modified = now;
        state
            .record_operation(
                id,
                Action::Unsubscribe,
                OperationStatus::Succeeded,
                RequestSource::Partner,
                None,
                now,
            )
            .ok_or_else(|| ApiError::not_found("subscription vanished"))?
    };
    notify_partner_change(&shared, op_id);
    Ok(accepted(operation_location(&shared, id, op_id)))
}

async fn list_operations(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let id = parse_id(&id, "subscription")?;
    let state = shared.lock();
    if state.subscription(id).is_none() {
        return Err(ApiError::not_found(format!(
            "The subscription '{id}' was not found."
        )));
    }
    let ops: Vec<Value> = state
        .operations
        .iter()
        .filter(|o| {
            o.subscription_id == id
                && matches!(
                    o.status,
                    OperationStatus::InProgress | OperationStatus::NotStarted
                )
        })
        .map(|o| o.to_json(&shared.config.publisher_id))
        .collect();
    Ok(json_ok(json!({ "operations": ops })))
}

fn find_operation(shared: &Shared, sub: &str, op: &str) -> Result<(Uuid, Uuid), ApiError> {
    let sub = parse_id(sub, "subscription")?;
    let op = parse_id(op, "operation")?;
    let state = shared.lock();
    if state.subscription(sub).is_none() {
        return Err(ApiError::not_found(format!(
            "The subscription '{sub}' was not found."
        )));
    }
    match state.operation(op) {
        Some(o) if o.subscription_id == sub => Ok((sub, op)),
        _ => Err(ApiError::not_found(format!(
            "The operation '{op}' was not found."
        ))),
    }
}

async fn get_operation(
    State(shared): State<AppState>,
    Path((sub, op)): Path<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let (_, op) = find_operation(&shared, &sub, &op)?;
    let state = shared.lock();
    let op = state
        .operation(op)
        .ok_or_else(|| ApiError::not_found("operation vanished"))?;
    Ok(json_ok(op.to_json(&shared.config.publisher_id)))
}

async fn update_operation(
    State(shared): State<AppState>,
    Path((sub, op)): Path<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let (_, op) = find_operation(&shared, &sub, &op)?;
    let body = parse_json(&body)?;
    let accept = match body.get("status").and_then(Value::as_str) {
        Some("Success") => true,
        Some("Failure") => false,
        _ => {
            return Err(ApiError::bad_request(
                "status must be \"Success\" or \"Failure\".",
            ));
        }
    };
    let now = shared.now();
    let reason = (!accept).then(|| "refused by the publisher (PATCH Failure)".to_string());
    let keep_refused = shared.config.apply_refused_changes;
    if shared
        .lock()
        .settle_operation(op, accept, reason, keep_refused, now)
    {
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "",
        )
            .into_response())
    } else {
        Err(ApiError::conflict(
            "The operation is not in progress: a newer update was already fulfilled or it already completed.",
        ))
    }
}
