//! Set-up requests in the portal: buyers who asked for a hand-held set-up, or who signed in as
//! neither the purchaser nor the beneficiary where the vendor lets operators decide. An
//! operator approves one (a one-time link to finish the set-up, shown once) or declines it
//! with a reason; the engine records and audits the decision.

use std::collections::HashMap;

use askama::Template;
use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Redirect, Response},
};
use marketlink_engine::approvals::DecisionError;
use marketlink_store::OnboardingRequest;
use serde::Deserialize;
use uuid::Uuid;

use super::{actor, internal, table::when};
use crate::{
    AppState,
    api_auth::hash_secret,
    extract::Operator,
    pages::{Branding, PageError, render},
    session::random_token,
};

const LIMIT: u32 = 200;

/// One open request as the page shows it.
struct RequestRow {
    id: Uuid,
    when: String,
    name: String,
    email: String,
    company: String,
    marketplace: String,
    customer: String,
    message: String,
}

impl From<OnboardingRequest> for RequestRow {
    fn from(r: OnboardingRequest) -> Self {
        Self {
            id: r.id,
            when: when(r.created_at),
            name: r.name,
            email: r.email,
            company: r.company.unwrap_or_default(),
            marketplace: r.purchase.subscription.marketplace.to_string(),
            customer: r.purchase.subscription.customer_id,
            message: r.message.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_onboarding.html")]
struct OnboardingPage {
    brand: Branding,
    csrf: String,
    approved_link: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    requests: Vec<RequestRow>,
}

/// What the page says above the list.
#[derive(Default)]
struct Said {
    approved_link: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

async fn page(
    state: &AppState,
    operator: &Operator,
    status: StatusCode,
    said: Said,
) -> Result<Response, PageError> {
    let requests = state
        .engine
        .open_onboarding_requests(LIMIT)
        .await
        .map_err(internal)?;
    let page = OnboardingPage {
        brand: state.settings.branding.clone(),
        csrf: operator.browser.session.csrf.clone(),
        approved_link: said.approved_link,
        notice: said.notice,
        error: said.error,
        requests: requests.into_iter().map(RequestRow::from).collect(),
    };
    Ok(render(status, &page))
}

/// `GET /admin/onboarding`.
pub(super) async fn list(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let said = Said {
        notice: query
            .get("declined")
            .map(|_| "Declined; the request is closed.".into()),
        ..Said::default()
    };
    page(&state, &operator, StatusCode::OK, said).await
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /admin/onboarding/{id}/approve`: the link is made here, shown once, stored hashed.
pub(super) async fn approve(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    let id = request_to_decide(&operator, &form, &id).map_err(|page| *page)?;
    let token = random_token(32);
    let approved = state
        .engine
        .approve_onboarding(&actor(&operator), id, &hash_secret(&token))
        .await;
    match approved {
        Ok(_) => {
            let public_url = state.settings.public_url.trim_end_matches('/');
            let said = Said {
                approved_link: Some(format!("{public_url}/onboarding/{token}")),
                ..Said::default()
            };
            page(&state, &operator, StatusCode::CREATED, said).await
        }
        Err(error) => refused(&state, &operator, error).await,
    }
}

/// `POST /admin/onboarding/{id}/decline`.
pub(super) async fn decline(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    let id = request_to_decide(&operator, &form, &id).map_err(|page| *page)?;
    match state
        .engine
        .decline_onboarding(&actor(&operator), id, &form.reason)
        .await
    {
        Ok(()) => Ok(axum::response::IntoResponse::into_response(Redirect::to(
            "/admin/onboarding?declined=1",
        ))),
        Err(error) => refused(&state, &operator, error).await,
    }
}

/// The request a decision form names, once its CSRF token is the operator's (boxed, like
/// `signup::checked_purchase`, since a page is large).
fn request_to_decide(
    operator: &Operator,
    form: &DecisionForm,
    id: &str,
) -> Result<Uuid, Box<PageError>> {
    if !operator.browser.session.csrf_matches(&form.csrf) {
        return Err(Box::new(PageError::forbidden_form()));
    }
    id.parse().map_err(|_| {
        Box::new(PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such set-up request.",
        ))
    })
}

async fn refused(
    state: &AppState,
    operator: &Operator,
    error: DecisionError,
) -> Result<Response, PageError> {
    let status = match error {
        DecisionError::NotOpen => StatusCode::CONFLICT,
        DecisionError::NoReason => StatusCode::UNPROCESSABLE_ENTITY,
        DecisionError::Store(error) => return Err(internal(error)),
    };
    let said = Said {
        error: Some(error.to_string()),
        ..Said::default()
    };
    page(state, operator, status, said).await
}
