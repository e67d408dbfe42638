//! Unverified sign-ups in the portal (ADR 0021): users whose address nobody has shown to be
//! theirs yet. Without `[email]` this is how addresses get verified: an operator who has
//! checked one (e.g. by writing to it) confirms it; the engine audits the confirmation and
//! tells the vendor's product (`user.email_verified`, method `operator`).

use std::collections::HashMap;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use marketlink_core::UserId;
use marketlink_engine::verification::ConfirmError;

use super::{
    actor, internal,
    table::{Row, TablePage, cell, link, when},
};
use crate::{AppState, extract::Operator, pages::PageError, session::CsrfForm};

/// How many unverified users the page lists, oldest first.
const LIMIT: u32 = 200;

/// `GET /admin/verifications`.
pub(super) async fn list(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let users = state
        .engine
        .unverified_users(LIMIT)
        .await
        .map_err(internal)?;
    let rows = users
        .into_iter()
        .map(|u| {
            let mut row = Row::new(vec![
                cell(&u.email),
                cell(u.name.unwrap_or_default()),
                link(
                    "subscriptions",
                    format!("/admin/subscriptions?tenant={}", u.tenant_id),
                ),
                cell(u.role.as_str()),
                cell(when(u.created_at)),
            ]);
            row.action = Some((
                format!("/admin/verifications/{}/confirm", u.id),
                "Confirm email".into(),
            ));
            row
        })
        .collect();
    let mut page = TablePage::new(
        &state,
        &operator,
        "Unverified email addresses",
        vec![(
            "Confirm an address only once you know it belongs to the person (write to it, or call them)".into(),
            vec!["Email", "Name", "Tenant", "Role", "Signed up", ""],
            rows,
        )],
    );
    page.notice = query
        .get("confirmed")
        .map(|email| format!("{email} is confirmed; the vendor's product has been told."));
    Ok(page.render())
}

/// `POST /admin/verifications/{id}/confirm`.
pub(super) async fn confirm(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !operator.browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let not_found = || PageError::new(StatusCode::NOT_FOUND, "Not found", "No such user.");
    let id = id.parse::<uuid::Uuid>().map_err(|_| not_found())?;
    match state
        .engine
        .confirm_email(&actor(&operator), UserId(id))
        .await
    {
        Ok(user) => {
            let email = super::table::urlencode(&user.email);
            Ok(Redirect::to(&format!("/admin/verifications?confirmed={email}")).into_response())
        }
        Err(ConfirmError::NoSuchUser) => Err(not_found()),
        Err(ConfirmError::AlreadyVerified) => Err(PageError::new(
            StatusCode::CONFLICT,
            "Already verified",
            "This address was verified already (by its owner's link, or by another operator).",
        )
        .action("/admin/verifications", "Back to unverified addresses")),
        Err(ConfirmError::Store(error)) => Err(internal(error)),
    }
}
