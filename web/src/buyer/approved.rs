//! `GET /onboarding/{token}`: the link an operator sends to a buyer whose set-up request they
//! approved. Like a landing, it puts the purchase the marketplace resolved into the browser's
//! session, and the buyer signs up or signs in to link it.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
};
use marketlink_engine::approvals::ApprovalLinkError;

use super::Reply;
use crate::{AppState, api_auth::hash_secret, extract::Browser, pages::PageError};

pub(super) async fn approved(
    State(state): State<AppState>,
    mut browser: Browser,
    Path(token): Path<String>,
) -> Reply {
    match state.engine.approved_purchase(&hash_secret(&token)).await {
        Ok((request, purchase)) => {
            tracing::info!(request = %request.id, "approved set-up link opened");
            browser.session.hold_purchase(purchase, state.now());
            Ok((
                browser.save(&state),
                Redirect::to("/signup").into_response(),
            ))
        }
        Err(ApprovalLinkError::Invalid) => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "This set-up link is not valid",
            "It may have expired (links work for 7 days) or been mistyped.",
        )
        .step("Ask the team that approved your request for a new link.")),
        Err(ApprovalLinkError::AlreadySetUp) => Err(PageError::new(
            StatusCode::CONFLICT,
            "This subscription is already set up",
            "Someone has set it up with an account already.",
        )
        .step("Sign in to that account, or ask its owner to invite you.")),
        Err(ApprovalLinkError::Store(error)) => Err(PageError::internal(&error)),
    }
}
