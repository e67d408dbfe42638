//! Operators sign in with an email and password from `[admin] users`, and sign out.

use crate::session::SavedSession;
use askama::Template;
use axum::{
    Form,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use marketlink_engine::Actor;
use serde::Deserialize;

use super::AdminUser;
use crate::limits::AccountAttempts;
use crate::session::CsrfForm;
use crate::{
    AppState,
    extract::Browser,
    pages::{Branding, PageError, render},
    password,
};

#[derive(Template)]
#[template(path = "admin_login.html")]
struct LoginPage {
    brand: Branding,
    csrf: String,
    error: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    browser: Browser,
) -> (SavedSession, Response) {
    let page = LoginPage {
        brand: state.settings.branding.clone(),
        csrf: browser.session.csrf.clone(),
        error: None,
    };
    (browser.save(&state), render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    csrf: String,
    email: String,
    password: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    mut browser: Browser,
    Form(form): Form<LoginForm>,
) -> Result<(SavedSession, Response), PageError> {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let email = form.email.trim().to_lowercase();
    state
        .sign_in_attempts
        .attempt(&email)
        .map_err(AccountAttempts::refusal)?;
    let Some(admin) = verified(&state.settings.admins, &email, form.password).await? else {
        tracing::warn!(%email, "admin sign-in refused");
        let page = LoginPage {
            brand: state.settings.branding.clone(),
            csrf: browser.session.csrf.clone(),
            error: Some("That email and password do not match an operator.".into()),
        };
        return Ok((browser.unsaved(), render(StatusCode::UNAUTHORIZED, &page)));
    };
    state
        .engine
        .operator_signed_in(&Actor::Operator(email.clone()))
        .await;
    browser.changes_hands();
    browser.session.admin_key = Some(crate::session::operator_key(
        &admin.email,
        &admin.password_hash,
    ));
    browser.session.admin = Some(email);
    Ok((browser.save(&state), Redirect::to("/admin").into_response()))
}

/// The operator with this email, if the password is theirs. Unknown emails are checked
/// against a dummy hash, so timing reveals nothing.
async fn verified<'a>(
    admins: &'a [AdminUser],
    email: &str,
    password: String,
) -> Result<Option<&'a AdminUser>, password::PasswordError> {
    let admin = admins.iter().find(|a| a.email.to_lowercase() == email);
    let hash = admin.map_or_else(|| password::DUMMY_HASH.into(), |a| a.password_hash.clone());
    let matches = password::verify(password, hash).await?;
    Ok(admin.filter(|_| matches))
}

/// `POST /admin/logout`: ends this session; its row is deleted, so a copy of the cookie
/// elsewhere is signed out too.
pub(super) async fn logout(
    State(state): State<AppState>,
    browser: Browser,
    Form(form): Form<CsrfForm>,
) -> Result<(SavedSession, Redirect), PageError> {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    Ok((browser.end(&state).await?, Redirect::to("/admin/login")))
}
