//! Extractors that load who is calling, so page handlers start from a signed-in user or an
//! operator instead of loading them by hand.

use axum::{
    extract::FromRequestParts,
    http::request::Parts,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_core::User;

use crate::{AppState, pages::PageError, session::Session};

/// The browser's session and cookie jar, loaded at the current time. Anyone may hold one.
pub struct Browser {
    pub session: Session,
    pub jar: PrivateCookieJar,
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar =
            PrivateCookieJar::from_headers(&parts.headers, state.settings.session_key.clone());
        let mut session = Session::load(&jar, state.now(), state.settings.secure_cookies);
        let here = &state.settings.public_url;
        if session
            .deployment
            .as_ref()
            .is_some_and(|made_by| made_by != here)
        {
            tracing::warn!(made_by = ?session.deployment, "a session cookie from another deployment was ignored");
            session = Session::reset(state.now());
        }
        session.deployment.get_or_insert_with(|| here.clone());
        Ok(Self { session, jar })
    }
}

impl Browser {
    /// The jar with this session written back (its lifetime extended).
    pub fn save(self, state: &AppState) -> PrivateCookieJar {
        self.session
            .save(self.jar, state.now(), state.settings.secure_cookies)
    }
}

/// A signed-in buyer-side user, as the store knows them now (role included). Without one the
/// browser is sent to `/signin`; a session whose user was removed is ended on the way.
pub struct SignedIn {
    pub user: User,
    pub browser: Browser,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(browser) = Browser::from_request_parts(parts, state).await;
        let Some(session_user) = &browser.session.user else {
            return Err(Redirect::to("/signin").into_response());
        };
        match state
            .engine
            .signed_in_user(session_user.user_id, session_user.tenant_id)
            .await
        {
            Ok(Some(user)) => Ok(Self { user, browser }),
            // Removed from the account since signing in: the session ends here.
            Ok(None) => {
                let ended = Browser {
                    session: Session::reset(state.now()),
                    jar: browser.jar,
                };
                Err((ended.save(state), Redirect::to("/signin")).into_response())
            }
            Err(error) => Err(PageError::internal(&error).into_response()),
        }
    }
}

/// The operator signed in to the admin portal. Without one the browser is sent to
/// `/admin/login`.
pub struct Operator {
    pub name: String,
    pub browser: Browser,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(mut browser) = Browser::from_request_parts(parts, state).await;
        let Some(name) = browser.session.admin.clone() else {
            return Err(Redirect::to("/admin/login").into_response());
        };
        // Still an operator, with the password they signed in with: configuration is the
        // source of truth, read at every request.
        let current = state
            .settings
            .admins
            .iter()
            .find(|a| a.email.eq_ignore_ascii_case(&name))
            .map(|a| crate::session::operator_key(&a.email, &a.password_hash));
        if current.is_none() || current != browser.session.admin_key {
            tracing::warn!(operator = %name, "operator session ended: removed from [admin] users or password changed");
            browser.session.admin = None;
            browser.session.admin_key = None;
            let jar = browser.save(state);
            return Err((jar, Redirect::to("/admin/login")).into_response());
        }
        Ok(Self { name, browser })
    }
}
