//! The buyer's journey: landing from a marketplace, optional marketplace sign-in, sign-up or
//! linking an existing account, verifying the sign-up's address, and the account overview. One module per screen; the use
//! cases behind them are the engine's, and the marketplaces' wording comes from their rules.

mod account;
mod approved;
pub(crate) mod landing;
mod signin;
mod signup;
mod verify;

use crate::session::SavedSession;
use axum::{
    Router,
    response::Response,
    routing::{get, post},
};

use crate::{AppState, pages::PageError};

pub(crate) use account::{human_date, status_words, term_end};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(signin::home))
        .route(
            "/{marketplace}/landing",
            get(landing::landing).post(landing::landing),
        )
        .route(
            "/{marketplace}/signin/callback",
            get(landing::sign_in_callback),
        )
        .route("/signup", get(signup::signup_page).post(signup::signup))
        .route("/signup/link", post(signup::link))
        .route("/signup/contact", post(signup::contact))
        .route("/signin", get(signin::signin_page).post(signin::signin))
        .route("/signout", post(signin::signout))
        .route("/signout/everywhere", post(signin::signout_everywhere))
        .route("/account", get(account::account))
        .route("/account/verify-email", post(verify::resend))
        .route("/verify-email/{token}", get(verify::verify))
        .route("/onboarding/{token}", get(approved::approved))
}

/// A page plus the cookie jar to send with it; a [`PageError`] leaves the session as it was.
type Reply = Result<(SavedSession, Response), PageError>;
