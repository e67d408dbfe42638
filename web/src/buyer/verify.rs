//! Verifying a sign-up's address (ADR 0021): the link mailed to it, and asking for another
//! one from the account page. Without `[email]` the vendor's team confirms addresses in the
//! admin portal instead.

use axum::{
    Form,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use marketlink_engine::verification::{ResendError, VerifyError};

use super::{Reply, signup::capitalise};
use crate::{AppState, extract::SignedIn, pages::PageError, session::CsrfForm};

/// `GET /verify-email/{token}`: the link from the verification mail. Anyone holding the link
/// may open it, signed in or not: only the address it was mailed to received it.
pub(super) async fn verify(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    match state.engine.verify_email(&token).await {
        Ok(user) => Ok(PageError::new(
            StatusCode::OK,
            "Your email address is verified",
            format!("Thank you: {} is confirmed as your address.", user.email),
        )
        .action("/account", "Go to your account")
        .into_response()),
        Err(VerifyError::Store(error)) => Err(PageError::internal(&error)),
        Err(refused) => {
            let (status, explanation) = match refused {
                VerifyError::Expired => (
                    StatusCode::GONE,
                    "Verification links work for 24 hours, and this one is older.",
                ),
                VerifyError::Used => (
                    StatusCode::GONE,
                    "Each verification link works once, and this one has been opened already. If that was you, your address is verified.",
                ),
                _ => (
                    StatusCode::NOT_FOUND,
                    "We never sent this link. Check that you copied the whole link from the email.",
                ),
            };
            Err(PageError::new(status, &capitalise(&refused.to_string()), explanation)
                .step("Sign in to your account to see whether your address is verified, and ask for a new link there if it is not.")
                .action("/account", "Go to your account"))
        }
    }
}

/// `POST /account/verify-email`: mail another link to the signed-in user.
pub(super) async fn resend(
    State(state): State<AppState>,
    SignedIn { user, browser }: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Reply {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let to = match state.engine.resend_verification(&user).await {
        Ok(()) => "/account?sent=1",
        Err(ResendError::AlreadyVerified | ResendError::NoMail) => "/account",
        Err(ResendError::Store(error)) => return Err(PageError::internal(&error)),
    };
    Ok((browser.save(&state), Redirect::to(to).into_response()))
}
