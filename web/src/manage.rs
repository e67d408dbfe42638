//! A tenant's view of one subscription: facts, history, and the changes the vendor may start
//! (plan, seats, cancellation) where the marketplace allows them and the user may.

use std::collections::HashMap;

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use marketlink_core::{PlanId, Role, Subscription, SubscriptionId, SubscriptionStatus};
use marketlink_engine::{ChangeError, SubscriptionDetail, VendorChange, may_change_subscriptions};
use serde::Deserialize;

use crate::{
    AppState,
    buyer::{human_date, status_words, term_end},
    extract::SignedIn,
    pages::{Branding, PageError, render},
    session::Session,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/subscriptions/{id}", get(page))
        .route("/account/subscriptions/{id}/plan", post(change_plan))
        .route(
            "/account/subscriptions/{id}/quantity",
            post(change_quantity),
        )
        .route("/account/subscriptions/{id}/cancel", post(cancel))
}

#[derive(Template)]
#[template(path = "subscription.html")]
struct SubscriptionPage {
    brand: Branding,
    csrf: String,
    id: String,
    product: String,
    marketplace: String,
    status: String,
    status_class: &'static str,
    plan: String,
    quantity: Option<u32>,
    entitlements: Vec<(String, String)>,
    /// Trial end, term end or renewal, start: label and date.
    term: Vec<(String, String)>,
    can_manage: bool,
    manage_hint: Option<String>,
    plans: Vec<(String, String)>,
    timeline: Vec<(String, String, String, String)>,
    notice: Option<String>,
    error: Option<String>,
}

fn not_found() -> PageError {
    PageError::new(
        StatusCode::NOT_FOUND,
        "Subscription not found",
        "There is no such subscription in your account.",
    )
    .action("/account", "Back to your subscriptions")
}

fn not_permitted() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "Only owners and admins can change subscriptions",
        "Ask an owner or admin of your account to make this change.",
    )
}

/// The subscription if it belongs to the signed-in user's tenant; another tenant's
/// subscription is reported exactly like a missing one.
async fn owned(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
) -> Result<Subscription, PageError> {
    let id: SubscriptionId = id.parse().map_err(|_| not_found())?;
    state
        .engine
        .tenant_subscription(signed_in.user.tenant_id, id)
        .await
        .map_err(|e| PageError::internal(&e))?
        .ok_or_else(not_found)
}

/// `GET /account/subscriptions/{id}`.
async fn page(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let subscription = owned(&state, &signed_in, &id).await?;
    let viewer = Viewer {
        session: &signed_in.browser.session,
        role: signed_in.user.role,
    };
    Ok(render_page(
        &state,
        viewer,
        &subscription,
        query.get("notice").cloned(),
        None,
        StatusCode::OK,
    )
    .await)
}

/// Who looks at the page: their session (for the form token) and their current role.
#[derive(Clone, Copy)]
struct Viewer<'a> {
    session: &'a Session,
    role: Role,
}

async fn render_page(
    state: &AppState,
    viewer: Viewer<'_>,
    s: &Subscription,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let capabilities = state.engine.capabilities_of(&s.external.marketplace);
    let may_manage = may_change_subscriptions(viewer.role);
    let live = s.status == SubscriptionStatus::Active;
    let can_manage = may_manage && live && capabilities.vendor_changes_plan;
    let detail = state.engine.subscription_detail(s, can_manage).await;
    let manage_hint = if !capabilities.vendor_changes_plan {
        Some(format!(
            "Plan and contract changes for this subscription are made on {}.",
            detail.rules.display_name
        ))
    } else if !may_manage {
        Some("Only the account's owners and admins can change this subscription.".into())
    } else {
        None
    };
    let (status_text, status_class) = status_words(s.status);
    let page = SubscriptionPage {
        brand: state.settings.branding.clone(),
        csrf: viewer.session.csrf.clone(),
        id: s.id.to_string(),
        product: product_name(state, s),
        marketplace: detail.rules.display_name.to_string(),
        status: status_text.into(),
        status_class,
        plan: s
            .plan_id
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "—".into()),
        quantity: s.quantity,
        term: term_lines(s, &detail),
        plans: other_plans(s, &detail),
        entitlements: entitlement_lines(&detail),
        timeline: timeline_rows(&detail),
        can_manage,
        manage_hint,
        notice,
        error,
    };
    render(status, &page)
}

fn product_name(state: &AppState, s: &Subscription) -> String {
    s.product_id
        .as_ref()
        .and_then(|p| state.engine.catalog.product(p))
        .map(|p| p.name.clone())
        .unwrap_or_else(|| s.external.product_code.clone())
}

/// The plans the subscription may move to: id and label.
fn other_plans(s: &Subscription, detail: &SubscriptionDetail) -> Vec<(String, String)> {
    detail
        .plans
        .iter()
        .filter(|p| Some(&p.plan_id) != s.plan_id.as_ref())
        .map(|p| {
            let label = p
                .display_name
                .clone()
                .unwrap_or_else(|| p.plan_id.to_string());
            (p.plan_id.to_string(), label)
        })
        .collect()
}

fn entitlement_lines(detail: &SubscriptionDetail) -> Vec<(String, String)> {
    detail
        .entitlements
        .iter()
        // Plan and quantity have their own lines above.
        .filter(|e| e.dimension != "plan" && e.dimension != "quantity")
        .map(|e| {
            let until = e
                .expires_at
                .map(|at| format!(" (until {})", human_date(at)))
                .unwrap_or_default();
            (e.dimension.replace('_', " "), format!("{}{until}", e.value))
        })
        .collect()
}

/// The 30 latest timeline entries, newest first: when, where from, what, outcome.
fn timeline_rows(detail: &SubscriptionDetail) -> Vec<(String, String, String, String)> {
    detail
        .timeline
        .iter()
        .rev()
        .take(30)
        .map(|e| {
            let when = e
                .recorded_at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .unwrap_or_default();
            // A marketplace message is recorded under its inbox id; the buyer needs to know
            // where the change came from, not our queue's ids.
            let source = if e.source.starts_with("inbox:") {
                "marketplace".to_owned()
            } else {
                e.source.clone()
            };
            (when, source, e.kind.clone(), e.outcome.clone())
        })
        .collect()
}

/// Trial end, term end or renewal, start: label and date.
fn term_lines(s: &Subscription, detail: &SubscriptionDetail) -> Vec<(String, String)> {
    let mut term = Vec::new();
    if let Some(start) = s.term.as_ref().and_then(|t| t.start) {
        term.push(("Started".to_owned(), human_date(start)));
    }
    match (term_end(s, &detail.entitlements), s.free_trial, s.status) {
        (Some(end), true, _) => term.push(("Free trial ends".to_owned(), human_date(end))),
        (None, true, _) => term.push(("Offer".to_owned(), "Free trial".to_owned())),
        (
            Some(end),
            false,
            SubscriptionStatus::UnsubscribePending | SubscriptionStatus::Cancelled,
        ) => term.push(("Ends".to_owned(), human_date(end))),
        (Some(end), false, _) => term.push(("Renews".to_owned(), human_date(end))),
        (None, false, _) => {}
    }
    term
}

#[derive(Debug, Deserialize)]
struct PlanForm {
    csrf: String,
    plan: String,
}

#[derive(Debug, Deserialize)]
struct QuantityForm {
    csrf: String,
    quantity: String,
}

#[derive(Debug, Deserialize)]
struct CancelForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

async fn change_plan(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<PlanForm>,
) -> Result<Response, PageError> {
    let plan = form.plan.trim();
    let change = (!plan.is_empty()).then(|| VendorChange::Plan(PlanId::new(plan)));
    let asked = Asked {
        csrf: &form.csrf,
        change,
        invalid: "Choose a plan.",
    };
    apply(&state, &signed_in, &id, asked).await
}

async fn change_quantity(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<QuantityForm>,
) -> Result<Response, PageError> {
    let change = form
        .quantity
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|q| *q >= 1)
        .map(VendorChange::Quantity);
    let asked = Asked {
        csrf: &form.csrf,
        change,
        invalid: "Enter a whole number of seats, at least 1.",
    };
    apply(&state, &signed_in, &id, asked).await
}

async fn cancel(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Result<Response, PageError> {
    let change = (form.confirm == "yes").then_some(VendorChange::Cancel);
    let asked = Asked {
        csrf: &form.csrf,
        change,
        invalid: "Tick the box to confirm the cancellation.",
    };
    apply(&state, &signed_in, &id, asked).await
}

/// A change form as posted: its token, the change it asks for (none when the form is not
/// filled in right) and what to tell the user then.
struct Asked<'a> {
    csrf: &'a str,
    change: Option<VendorChange>,
    invalid: &'a str,
}

/// Checks the form and the user's right to change this subscription, then asks the
/// marketplace through the engine.
async fn apply(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
    asked: Asked<'_>,
) -> Result<Response, PageError> {
    let session = &signed_in.browser.session;
    if !session.csrf_matches(asked.csrf) {
        return Err(PageError::forbidden_form());
    }
    let subscription = owned(state, signed_in, id).await?;
    if !may_change_subscriptions(signed_in.user.role) {
        return Err(not_permitted());
    }
    let viewer = Viewer {
        session,
        role: signed_in.user.role,
    };
    let refused = |status: StatusCode, message: String| {
        render_page(state, viewer, &subscription, None, Some(message), status)
    };
    let Some(change) = asked.change else {
        return Ok(refused(StatusCode::UNPROCESSABLE_ENTITY, asked.invalid.into()).await);
    };
    let (status, message) = match state
        .engine
        .request_change_as(&signed_in.user, subscription.id, change)
        .await
    {
        Ok(_) => {
            let to = format!(
                "/account/subscriptions/{}?notice=Your+change+was+sent+to+the+marketplace%3B+it+applies+once+confirmed.",
                subscription.id
            );
            return Ok(Redirect::to(&to).into_response());
        }
        Err(ChangeError::NotFound) => return Err(not_found()),
        Err(ChangeError::NotPermitted) => return Err(not_permitted()),
        Err(ChangeError::NotOffered(_)) | Err(ChangeError::NotChangeable(_)) => (
            StatusCode::CONFLICT,
            "This change cannot be made from here for this subscription.".to_owned(),
        ),
        Err(ChangeError::Provider(error)) if !error.is_retryable() => (
            StatusCode::CONFLICT,
            format!("The marketplace refused the change: {error}"),
        ),
        Err(ChangeError::Provider(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The marketplace is not answering right now ({error}); try again in a minute."),
        ),
        Err(ChangeError::Store(error)) => return Err(PageError::internal(&error)),
    };
    Ok(refused(status, message).await)
}
