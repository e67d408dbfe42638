//! A tenant's view of one subscription: facts, history, and the changes the vendor may start
//! (plan, seats, cancellation) where the marketplace allows them.

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_core::{PlanId, Role, Subscription, SubscriptionId};
use marketlink_engine::{ChangeError, VendorChange};
use serde::Deserialize;

use crate::{
    AppState,
    buyer::{marketplace_name, status_words},
    pages::{Branding, PageError, render},
    session::{Session, SessionUser, current_user},
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

/// The subscription if it belongs to the signed-in user's tenant; another tenant's
/// subscription is reported exactly like a missing one.
async fn owned(state: &AppState, user: &SessionUser, id: &str) -> Result<Subscription, PageError> {
    let id: SubscriptionId = id.parse().map_err(|_| not_found())?;
    match state.store.get_subscription(id).await {
        Ok(s) if s.tenant_id == Some(user.tenant_id) => Ok(s),
        Ok(_) | Err(marketlink_store::StoreError::NotFound(_)) => Err(not_found()),
        Err(error) => Err(PageError::internal(&error)),
    }
}

async fn page(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let brand = &state.settings.branding;
    let session = Session::load(&jar, state.clock.now());
    let Some(user) = session.user.clone() else {
        return Redirect::to("/signin").into_response();
    };
    let me = match current_user(&state.store, &session).await {
        Ok(Some(me)) => me,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(error) => return PageError::internal(&error).render(brand),
    };
    let subscription = match owned(&state, &user, &id).await {
        Ok(s) => s,
        Err(page) => return page.render(brand),
    };
    render_page(
        &state,
        &session,
        me.role,
        &subscription,
        query.get("notice").cloned(),
        None,
        StatusCode::OK,
    )
    .await
}

/// The subscription page for a signed-in viewer whose current `role` the caller has read.
async fn render_page(
    state: &AppState,
    session: &Session,
    role: Role,
    s: &Subscription,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let provider = state.engine.providers.get(&s.external.marketplace);
    let capabilities = provider.map(|p| p.capabilities()).unwrap_or_default();
    let may_manage = matches!(role, Role::Owner | Role::Admin);
    let live = s.status == marketlink_core::SubscriptionStatus::Active;
    let can_manage = may_manage && live && capabilities.vendor_changes_plan;
    let manage_hint = if !capabilities.vendor_changes_plan {
        Some(format!(
            "Plan and contract changes for this subscription are made on {}.",
            marketplace_name(s.external.marketplace.as_str())
        ))
    } else if !may_manage {
        Some("Only the account's owners and admins can change this subscription.".into())
    } else {
        None
    };
    let mut plans = Vec::new();
    if can_manage && let Some(provider) = provider {
        match provider.available_plans(&s.external).await {
            Ok(available) => {
                plans = available
                    .into_iter()
                    .filter(|p| Some(&p.plan_id) != s.plan_id.as_ref())
                    .map(|p| {
                        let label = p.display_name.unwrap_or_else(|| p.plan_id.to_string());
                        (p.plan_id.to_string(), label)
                    })
                    .collect();
            }
            Err(error) => tracing::warn!(%error, "cannot list available plans"),
        }
    }
    let stored = state.store.entitlements(s.id).await.unwrap_or_default();
    let trial_or_term_end = crate::buyer::term_end(s, &stored);
    let entitlements = stored
        .into_iter()
        // Plan and quantity have their own lines above.
        .filter(|e| e.dimension != "plan" && e.dimension != "quantity")
        .map(|e| {
            let until = e
                .expires_at
                .map(|at| format!(" (until {})", crate::buyer::human_date(at)))
                .unwrap_or_default();
            (e.dimension.replace('_', " "), format!("{}{until}", e.value))
        })
        .collect();
    let timeline = state
        .store
        .timeline(s.id, 200)
        .await
        .unwrap_or_default()
        .into_iter()
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
                e.source
            };
            (when, source, e.kind, e.outcome)
        })
        .collect();
    let (status_text, status_class) = status_words(s.status);
    let mut term = Vec::new();
    if let Some(start) = s.term.as_ref().and_then(|t| t.start) {
        term.push(("Started".to_owned(), crate::buyer::human_date(start)));
    }
    match (trial_or_term_end, s.free_trial, s.status) {
        (Some(end), true, _) => {
            term.push(("Free trial ends".to_owned(), crate::buyer::human_date(end)));
        }
        (None, true, _) => term.push(("Offer".to_owned(), "Free trial".to_owned())),
        (
            Some(end),
            false,
            marketlink_core::SubscriptionStatus::UnsubscribePending
            | marketlink_core::SubscriptionStatus::Cancelled,
        ) => term.push(("Ends".to_owned(), crate::buyer::human_date(end))),
        (Some(end), false, _) => term.push(("Renews".to_owned(), crate::buyer::human_date(end))),
        (None, false, _) => {}
    }
    let product = s
        .product_id
        .as_ref()
        .and_then(|p| state.engine.catalog.product(p))
        .map(|p| p.name.clone())
        .unwrap_or_else(|| s.external.product_code.clone());
    render(
        status,
        &SubscriptionPage {
            brand: state.settings.branding.clone(),
            csrf: session.csrf.clone(),
            id: s.id.to_string(),
            product,
            marketplace: marketplace_name(s.external.marketplace.as_str()).to_owned(),
            status: status_text.into(),
            status_class,
            plan: s
                .plan_id
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "—".into()),
            quantity: s.quantity,
            entitlements,
            term,
            can_manage,
            manage_hint,
            plans,
            timeline,
            notice,
            error,
        },
    )
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
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<PlanForm>,
) -> Response {
    let plan = form.plan.trim();
    let change = (!plan.is_empty()).then(|| VendorChange::Plan(PlanId::new(plan)));
    apply(state, jar, id, &form.csrf, change, "Choose a plan.").await
}

async fn change_quantity(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<QuantityForm>,
) -> Response {
    let change = form
        .quantity
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|q| *q >= 1)
        .map(VendorChange::Quantity);
    apply(
        state,
        jar,
        id,
        &form.csrf,
        change,
        "Enter a whole number of seats, at least 1.",
    )
    .await
}

async fn cancel(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    let change = (form.confirm == "yes").then_some(VendorChange::Cancel);
    apply(
        state,
        jar,
        id,
        &form.csrf,
        change,
        "Tick the box to confirm the cancellation.",
    )
    .await
}

/// Checks the form, the user's right to change this subscription, then asks the marketplace.
async fn apply(
    state: AppState,
    jar: PrivateCookieJar,
    id: String,
    csrf: &str,
    change: Option<VendorChange>,
    invalid: &str,
) -> Response {
    let brand = &state.settings.branding;
    let session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(csrf) {
        return PageError::forbidden_form().render(brand);
    }
    let Some(user) = session.user.clone() else {
        return Redirect::to("/signin").into_response();
    };
    let subscription = match owned(&state, &user, &id).await {
        Ok(s) => s,
        Err(page) => return page.render(brand),
    };
    let role = match current_user(&state.store, &session).await {
        Ok(Some(me)) if matches!(me.role, Role::Owner | Role::Admin) => me.role,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Ok(_) => {
            return PageError::new(
                StatusCode::FORBIDDEN,
                "Only owners and admins can change subscriptions",
                "Ask an owner or admin of your account to make this change.",
            )
            .render(brand);
        }
        Err(error) => return PageError::internal(&error).render(brand),
    };
    let Some(change) = change else {
        return render_page(
            &state,
            &session,
            role,
            &subscription,
            None,
            Some(invalid.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let error = match state.engine.request_change(subscription.id, change).await {
        Ok(_) => {
            let to = format!(
                "/account/subscriptions/{}?notice=Your+change+was+sent+to+the+marketplace%3B+it+applies+once+confirmed.",
                subscription.id
            );
            return Redirect::to(&to).into_response();
        }
        Err(ChangeError::NotOffered(_)) | Err(ChangeError::NotChangeable(_)) => None,
        Err(ChangeError::Provider(error)) if !error.is_retryable() => Some((
            StatusCode::CONFLICT,
            format!("The marketplace refused the change: {error}"),
        )),
        Err(ChangeError::Provider(error)) => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The marketplace is not answering right now ({error}); try again in a minute."),
        )),
        Err(ChangeError::Store(error)) => return PageError::internal(&error).render(brand),
    };
    let (status, message) = error.unwrap_or((
        StatusCode::CONFLICT,
        "This change cannot be made from here for this subscription.".into(),
    ));
    render_page(
        &state,
        &session,
        role,
        &subscription,
        None,
        Some(message),
        status,
    )
    .await
}
