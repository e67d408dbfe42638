//! Signing in with a password (linking the waiting purchase, if any) and signing out.

use askama::Template;
use axum::{
    Form,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use marketlink_core::User;
use serde::Deserialize;

use super::Reply;
use crate::limits::AccountAttempts;
use crate::session::CsrfForm;
use crate::{
    AppState,
    extract::{Browser, SignedIn},
    pages::{Branding, PageError, render},
    password,
    session::{Session, SessionUser},
};

/// `GET /`: the account for a signed-in browser, else the sign-in page.
pub(super) async fn home(browser: Browser) -> Redirect {
    if browser.session.user.is_some() {
        Redirect::to("/account")
    } else {
        Redirect::to("/signin")
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    brand: Branding,
    csrf: String,
    email: String,
    error: Option<String>,
}

/// `GET /signin`.
pub(super) async fn signin_page(State(state): State<AppState>, browser: Browser) -> Reply {
    let page = SigninPage {
        brand: state.settings.branding.clone(),
        csrf: browser.session.csrf.clone(),
        email: String::new(),
        error: None,
    };
    Ok((browser.save(&state), render(StatusCode::OK, &page)))
}

// No Debug: it holds a password.
#[derive(Deserialize)]
pub(super) struct SigninForm {
    csrf: String,
    email: String,
    password: String,
}

/// `POST /signin`: with a purchase waiting, signing in also links it to the account.
pub(super) async fn signin(
    State(state): State<AppState>,
    mut browser: Browser,
    Form(form): Form<SigninForm>,
) -> Reply {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    state
        .sign_in_attempts
        .attempt(&form.email)
        .map_err(AccountAttempts::refusal)?;
    let Some(user) = verified_user(&state, &form).await? else {
        let page = refused_page(&state, &browser.session, &form.email);
        return Ok((browser.unsaved(), page));
    };
    browser.changes_hands();
    browser.session.user = Some(SessionUser {
        user_id: user.id,
        tenant_id: user.tenant_id,
        email: user.email.clone(),
    });
    match browser.session.purchase.clone() {
        Some(pending) => {
            super::signup::finish_link(&state, browser, &user, &pending.purchase).await
        }
        None => Ok((
            browser.save(&state),
            Redirect::to("/account").into_response(),
        )),
    }
}

/// The user whose password the form gives, if it matches.
async fn verified_user(state: &AppState, form: &SigninForm) -> Result<Option<User>, PageError> {
    let found = state
        .engine
        .sign_in_candidate(&form.email)
        .await
        .map_err(|e| PageError::internal(&e))?;
    let verified = match found.as_ref().and_then(|c| c.password_hash.clone()) {
        Some(hash) => password::verify(form.password.clone(), hash).await?,
        // Spend the same time when the email is unknown, so timing does not reveal accounts.
        None => {
            password::verify(form.password.clone(), password::DUMMY_HASH.into()).await?;
            false
        }
    };
    Ok(found.filter(|_| verified).map(|c| c.user))
}

/// A refused sign-in: the sign-up page again when a purchase waits, else the sign-in page.
fn refused_page(state: &AppState, session: &Session, email: &str) -> Response {
    let message = "That email and password do not match an account.".to_owned();
    match &session.purchase {
        Some(pending) => {
            super::signup::signup_page_for(state, session, &pending.purchase, Some(message), None)
                .with_status(StatusCode::UNAUTHORIZED)
        }
        None => render(
            StatusCode::UNAUTHORIZED,
            &SigninPage {
                brand: state.settings.branding.clone(),
                csrf: session.csrf.clone(),
                email: email.to_owned(),
                error: Some(message),
            },
        ),
    }
}

/// `POST /signout`: ends this session. Its row is deleted, so a copy of the cookie (another
/// device, a stolen cookie) is signed out too.
pub(super) async fn signout(
    State(state): State<AppState>,
    browser: Browser,
    Form(form): Form<CsrfForm>,
) -> Reply {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    Ok((
        browser.end(&state).await?,
        Redirect::to("/signin").into_response(),
    ))
}

/// `POST /signout/everywhere`: ends every session of the signed-in user, this one included
/// (a lost laptop, a session left open on a shared computer).
pub(super) async fn signout_everywhere(
    State(state): State<AppState>,
    SignedIn { user, browser }: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Reply {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    state
        .engine
        .end_user_sessions(user.id)
        .await
        .map_err(|e| crate::session::unavailable(&e))?;
    Ok((
        browser.end(&state).await?,
        Redirect::to("/signin").into_response(),
    ))
}
