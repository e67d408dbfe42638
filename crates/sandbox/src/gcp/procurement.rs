//! Partner Procurement API v1 (gcp.md §3; discovery document revision 20250914, S8): accounts
//! and entitlements of one provider, the vendor's side of the entitlement state machine, and
//! Google's errors (401 without a token, 403 for another provider, 404 for an unknown id, 400
//! FAILED_PRECONDITION for a call the state does not allow: gcp.md marks that status [U]).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Shared,
    auth::authorize,
    errors::{GoogleError, parse_body},
    events::{entitlement_event, fields},
    filter::Filter,
    model::{ApprovalState, Entitlement, EntitlementState, timestamp},
};

type Params = Query<HashMap<String, String>>;

pub(crate) fn reply(result: Result<Value, GoogleError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Authenticates the caller and checks it acts for `provider` (only the linked service account
/// of the configured provider may; Google answers others 403).
fn check_caller(shared: &Shared, headers: &HeaderMap, provider: &str) -> Result<(), GoogleError> {
    let email = authorize(shared, headers, &[])?;
    if provider != shared.config.provider_id || email != shared.config.service_account_email {
        return Err(GoogleError::permission_denied());
    }
    Ok(())
}

/// `pageSize` (default `default`, at most `max`) and `pageToken` (an offset here: opaque to
/// clients, as Google's).
fn page<T: Clone>(
    items: &[T],
    params: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<(Vec<T>, Option<String>), GoogleError> {
    let size = match params.get("pageSize") {
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| GoogleError::invalid_argument("Invalid pageSize"))?,
        None => default,
    };
    let size = if size == 0 { default } else { size.min(max) };
    let start = match params.get("pageToken").filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| GoogleError::invalid_argument("Invalid pageToken"))?,
        None => 0,
    };
    let end = (start + size).min(items.len());
    let slice = items.get(start..end).unwrap_or_default().to_vec();
    let next = (end < items.len()).then(|| end.to_string());
    Ok((slice, next))
}

/// `GET /v1/providers/{p}/accounts`.
pub(crate) async fn list_accounts(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let accounts: Vec<_> = shared.lock().accounts.values().cloned().collect();
        let (accounts, next) = page(&accounts, &params, 25, 200)?;
        let mut body = json!({ "accounts": accounts });
        if let Some(next) = next {
            body["nextPageToken"] = next.into();
        }
        Ok(body)
    })())
}

/// `GET /v1/providers/{p}/accounts/{a}`.
pub(crate) async fn get_account(
    State(shared): State<Arc<Shared>>,
    Path((provider, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let state = shared.lock();
        let account = state
            .accounts
            .get(&account)
            .ok_or_else(|| not_found("Account"))?;
        Ok(json!(account))
    })())
}

fn not_found(kind: &str) -> GoogleError {
    GoogleError::not_found(format!("{kind} not found."))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalRequest {
    #[serde(default)]
    approval_name: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/providers/{p}/accounts/{a}:{approve|reject|reset}`.
pub(crate) async fn account_call(
    State(shared): State<Arc<Shared>>,
    Path((provider, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let (id, verb) = call.split_once(':').unwrap_or((call.as_str(), ""));
        match verb {
            "approve" => set_approval(&shared, id, ApprovalState::Approved, parse_body(&body)?),
            "reject" => set_approval(&shared, id, ApprovalState::Rejected, parse_body(&body)?),
            "reset" => reset_account(&shared, id),
            _ => Err(GoogleError::not_found(format!("Method not found: {verb}"))),
        }
    })())
}

/// Approves or rejects the account's approval. The only approval is `signup` (the codelab's
/// name), so `approvalName` may be left out; another name is refused. Rejected → approved is
/// allowed (S8). `reason` is cut to 256 bytes (S8).
fn set_approval(
    shared: &Shared,
    id: &str,
    to: ApprovalState,
    request: ApprovalRequest,
) -> Result<Value, GoogleError> {
    let now = timestamp(shared.clock.now());
    let mut state = shared.lock();
    let account = state
        .accounts
        .get_mut(id)
        .ok_or_else(|| not_found("Account"))?;
    let name = request.approval_name.unwrap_or_else(|| "signup".into());
    let approval = account
        .approvals
        .iter_mut()
        .find(|a| a.name == name)
        .ok_or_else(|| GoogleError::invalid_argument(format!("Unknown approval: {name}")))?;
    let mut reason = request.reason.unwrap_or_default();
    while reason.len() > 256 {
        reason.pop();
    }
    approval.state = to;
    approval.reason = reason;
    approval.update_time = now.clone();
    account.update_time = now;
    Ok(json!({}))
}

/// "Resets an Account and cancels all associated Entitlements" (S8): the approval returns to
/// pending and no message is published (the codelab's `tools/reset_account.py`, S9).
fn reset_account(shared: &Shared, id: &str) -> Result<Value, GoogleError> {
    let now = timestamp(shared.clock.now());
    let mut state = shared.lock();
    let account = state
        .accounts
        .get_mut(id)
        .ok_or_else(|| not_found("Account"))?;
    for approval in &mut account.approvals {
        approval.state = ApprovalState::Pending;
        approval.reason.clear();
        approval.update_time = now.clone();
    }
    account.update_time = now.clone();
    for entitlement in state.entitlements.values_mut() {
        if entitlement.account_id() == id {
            entitlement.state = EntitlementState::EntitlementCancelled;
            entitlement.new_pending_plan = None;
            entitlement.update_time = now.clone();
        }
    }
    Ok(json!({}))
}

/// `GET /v1/providers/{p}/entitlements?filter=`.
pub(crate) async fn list_entitlements(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let filter = match params.get("filter").filter(|f| !f.trim().is_empty()) {
            Some(text) => Some(Filter::parse(text).map_err(GoogleError::invalid_argument)?),
            None => None,
        };
        let mut matching = Vec::new();
        for entitlement in shared.lock().entitlements.values() {
            let keep = match &filter {
                Some(f) => f
                    .matches(entitlement)
                    .map_err(GoogleError::invalid_argument)?,
                None => true,
            };
            if keep {
                matching.push(entitlement.clone());
            }
        }
        let (entitlements, next) = page(&matching, &params, 200, 200)?;
        let mut body = json!({ "entitlements": entitlements });
        if let Some(next) = next {
            body["nextPageToken"] = next.into();
        }
        Ok(body)
    })())
}

/// `GET /v1/providers/{p}/entitlements/{e}`.
pub(crate) async fn get_entitlement(
    State(shared): State<Arc<Shared>>,
    Path((provider, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let state = shared.lock();
        let entitlement = state
            .entitlements
            .get(&id)
            .ok_or_else(|| not_found("Entitlement"))?;
        let body = json!(entitlement);
        crate::fuzz_seed("gcp_entitlement", body.to_string().as_bytes());
        Ok(body)
    })())
}

/// `PATCH /v1/providers/{p}/entitlements/{e}?updateMask=messageToUser`: only `messageToUser`
/// is writable, and only while the vendor has a decision to make (S8).
pub(crate) async fn patch_entitlement(
    State(shared): State<Arc<Shared>>,
    Path((provider, id)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let mask = params
            .get("updateMask")
            .map(String::as_str)
            .unwrap_or_default();
        if !mask
            .split(',')
            .all(|f| f == "messageToUser" || f == "message_to_user")
        {
            return Err(GoogleError::invalid_argument(format!(
                "Only messageToUser can be updated, not: {mask}"
            )));
        }
        let patch: Value = parse_body(&body)?;
        let message = patch
            .get("messageToUser")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut state = shared.lock();
        let entitlement = state
            .entitlements
            .get_mut(&id)
            .ok_or_else(|| not_found("Entitlement"))?;
        use EntitlementState::*;
        if !matches!(
            entitlement.state,
            EntitlementActivationRequested | EntitlementPendingPlanChangeApproval
        ) {
            return Err(wrong_state(entitlement));
        }
        entitlement.message_to_user = message;
        entitlement.update_time = timestamp(shared.clock.now());
        Ok(json!(entitlement))
    })())
}

pub(crate) fn wrong_state(entitlement: &Entitlement) -> GoogleError {
    GoogleError::failed_precondition(format!(
        "Entitlement {} is in state {}.",
        entitlement.id(),
        entitlement.state.name()
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntitlementRequest {
    #[serde(default)]
    pending_plan_name: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/providers/{p}/entitlements/{e}:{verb}`.
pub(crate) async fn entitlement_call(
    State(shared): State<Arc<Shared>>,
    Path((provider, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        check_caller(&shared, &headers, &provider)?;
        let (id, verb) = call.split_once(':').unwrap_or((call.as_str(), ""));
        let request: EntitlementRequest = parse_body(&body)?;
        match verb {
            "approve" => approve(&shared, id),
            "reject" => reject(&shared, id, request.reason),
            "approvePlanChange" => decide_plan_change(&shared, id, request, true),
            "rejectPlanChange" => decide_plan_change(&shared, id, request, false),
            // S8: "This is not yet supported."
            "suspend" => Err(GoogleError::unimplemented("This is not yet supported.")),
            _ => Err(GoogleError::not_found(format!("Method not found: {verb}"))),
        }
    })())
}

/// ACTIVATION_REQUESTED → ACTIVE, once the account's sign-up is approved (S11, codelab order);
/// publishes ENTITLEMENT_ACTIVE.
fn approve(shared: &Arc<Shared>, id: &str) -> Result<Value, GoogleError> {
    let mut state = shared.lock();
    let entitlement = state
        .entitlements
        .get(id)
        .ok_or_else(|| not_found("Entitlement"))?;
    if entitlement.state != EntitlementState::EntitlementActivationRequested {
        return Err(wrong_state(entitlement));
    }
    let account_approved = state
        .accounts
        .get(entitlement.account_id())
        .is_some_and(|a| {
            a.approvals
                .iter()
                .all(|x| x.state == ApprovalState::Approved)
        });
    if !account_approved {
        return Err(GoogleError::failed_precondition(format!(
            "Account {} is not approved.",
            entitlement.account_id()
        )));
    }
    let now = timestamp(shared.clock.now());
    let Some(entitlement) = state.entitlements.get_mut(id) else {
        return Err(not_found("Entitlement"));
    };
    entitlement.state = EntitlementState::EntitlementActive;
    entitlement.update_time = now;
    // S8: "cleared automatically when the entitlement state changes".
    entitlement.message_to_user = None;
    let entitlement = entitlement.clone();
    entitlement_event(
        shared,
        &mut state,
        "ENTITLEMENT_ACTIVE",
        &entitlement,
        fields([]),
    );
    Ok(json!({}))
}

/// ACTIVATION_REQUESTED → CANCELLED (the order is refused; the resulting state and message are
/// not documented: the sandbox cancels and publishes ENTITLEMENT_CANCELLED).
fn reject(shared: &Arc<Shared>, id: &str, reason: Option<String>) -> Result<Value, GoogleError> {
    let now = timestamp(shared.clock.now());
    let mut state = shared.lock();
    let entitlement = state
        .entitlements
        .get_mut(id)
        .ok_or_else(|| not_found("Entitlement"))?;
    if entitlement.state != EntitlementState::EntitlementActivationRequested {
        return Err(wrong_state(entitlement));
    }
    entitlement.state = EntitlementState::EntitlementCancelled;
    entitlement.cancellation_reason = Some(reason.unwrap_or_else(|| "unknown".into()));
    entitlement.update_time = now;
    // S8: "cleared automatically when the entitlement state changes".
    entitlement.message_to_user = None;
    let entitlement = entitlement.clone();
    entitlement_event(
        shared,
        &mut state,
        "ENTITLEMENT_CANCELLED",
        &entitlement,
        fields([]),
    );
    Ok(json!({}))
}

/// PENDING_PLAN_CHANGE_APPROVAL → ACTIVE with the new plan (approve, ENTITLEMENT_PLAN_CHANGED)
/// or with the old one (reject, ENTITLEMENT_PLAN_CHANGE_CANCELLED). `pendingPlanName` is
/// required and must be the pending plan (S8).
fn decide_plan_change(
    shared: &Arc<Shared>,
    id: &str,
    request: EntitlementRequest,
    approve: bool,
) -> Result<Value, GoogleError> {
    let Some(pending_plan) = request.pending_plan_name.filter(|p| !p.is_empty()) else {
        return Err(GoogleError::invalid_argument(
            "pendingPlanName is required.",
        ));
    };
    let now = timestamp(shared.clock.now());
    let mut state = shared.lock();
    let entitlement = state
        .entitlements
        .get_mut(id)
        .ok_or_else(|| not_found("Entitlement"))?;
    if entitlement.state != EntitlementState::EntitlementPendingPlanChangeApproval {
        return Err(wrong_state(entitlement));
    }
    if entitlement.new_pending_plan.as_deref() != Some(pending_plan.as_str()) {
        return Err(GoogleError::failed_precondition(format!(
            "Pending plan is not {pending_plan}."
        )));
    }
    entitlement.update_time = now;
    // S8: "cleared automatically when the entitlement state changes".
    entitlement.message_to_user = None;
    if approve && shared.config.plan_change_at_cycle_end {
        // S8: approved changes that wait for the billing cycle sit in PENDING_PLAN_CHANGE; no
        // message is documented for this step, so none is sent until the change applies.
        entitlement.state = EntitlementState::EntitlementPendingPlanChange;
        return Ok(json!({}));
    }
    entitlement.state = EntitlementState::EntitlementActive;
    entitlement.new_pending_plan = None;
    let event = if approve {
        entitlement.plan = pending_plan.clone();
        "ENTITLEMENT_PLAN_CHANGED"
    } else {
        "ENTITLEMENT_PLAN_CHANGE_CANCELLED"
    };
    let entitlement = entitlement.clone();
    let extra = fields([("newPlan", Some(pending_plan))]);
    entitlement_event(shared, &mut state, event, &entitlement, extra);
    Ok(json!({}))
}
