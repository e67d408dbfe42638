//! Extractors that load who is calling, so page handlers start from a signed-in user or an
//! operator instead of loading them by hand.

use axum::{
    extract::FromRequestParts,
    http::request::Parts,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_core::User;
use time::OffsetDateTime;

use crate::{
    AppState,
    pages::PageError,
    session::{
        self, SavedSession, Session,
        persist::{PendingTouch, SessionWrite, Touch},
    },
};

/// The browser's session, loaded from the database at the current time. Anyone may hold
/// one; a browser without a live session gets a fresh one, stored when first saved.
pub struct Browser {
    pub session: Session,
    jar: PrivateCookieJar,
    /// The stored session this one was loaded from.
    loaded: Option<Loaded>,
    /// Set when the session changes hands: the next save stores it under a new id.
    rotate: bool,
}

/// A session as the database held it when the request began.
struct Loaded {
    id: String,
    data: String,
    expires_at: OffsetDateTime,
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar =
            PrivateCookieJar::from_headers(&parts.headers, state.settings.session_key.clone());
        let now = state.now();
        let mut browser = Browser {
            session: Session::fresh(now),
            jar,
            loaded: None,
            rotate: false,
        };
        if let Some(id) = session::cookie_id(&browser.jar, state.settings.secure_cookies) {
            let stored = state
                .engine
                .session(&session::id_hash(&id))
                .await
                .map_err(|e| session::unavailable(&e).into_response())?;
            if let Some(stored) = stored
                && let Some(found) = Session::from_stored(&stored.data, stored.started_at, now)
            {
                note_stale(parts, &found, &id, &stored.data, stored.expires_at, now);
                browser.session = found;
                browser.loaded = Some(Loaded {
                    id,
                    data: stored.data,
                    expires_at: stored.expires_at,
                });
            }
        }
        let here = &state.settings.public_url;
        if browser
            .session
            .deployment
            .as_ref()
            .is_some_and(|made_by| made_by != here)
        {
            tracing::warn!(made_by = ?browser.session.deployment, "a session from another deployment was ignored");
            browser.session = Session::fresh(now);
            browser.loaded = None;
        }
        browser
            .session
            .deployment
            .get_or_insert_with(|| here.clone());
        Ok(browser)
    }
}

/// Notes a session whose stored idle expiry is stale for the session middleware, which
/// extends it after the handler if the handler does not save it itself.
fn note_stale(
    parts: &Parts,
    session: &Session,
    id: &str,
    data: &str,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) {
    let Some(pending) = parts.extensions.get::<PendingTouch>() else {
        return;
    };
    if let Some(record) = session.record(session::id_hash(id), now)
        && !Session::nothing_to_write(&record, data, expires_at)
    {
        pending.note(Touch {
            id: id.to_owned(),
            record,
            lifetime: session.idle_lifetime(),
        });
    }
}

impl Browser {
    /// The session written back (its idle lifetime extended) once the handler is done: the
    /// cookie, and the database write [`session::store_saved`] makes. An unchanged session
    /// is written only when its stored expiry is over [`session::REFRESH_AFTER`] behind.
    pub fn save(self, state: &AppState) -> SavedSession {
        let now = state.now();
        let secure = state.settings.secure_cookies;
        let lifetime = self.session.idle_lifetime();
        let (id, replaces) = match self.loaded {
            Some(loaded) if !self.rotate => {
                let record = self.session.record(session::id_hash(&loaded.id), now);
                let write = match record {
                    None => Some(SessionWrite::Unwritable),
                    Some(record)
                        if Session::nothing_to_write(&record, &loaded.data, loaded.expires_at) =>
                    {
                        None
                    }
                    Some(record) => Some(SessionWrite::Update(record)),
                };
                let jar = session::with_cookie(self.jar, loaded.id, secure, lifetime);
                return SavedSession { jar, write };
            }
            Some(loaded) => (session::new_id(), Some(session::id_hash(&loaded.id))),
            None => (session::new_id(), None),
        };
        let write = match self.session.record(session::id_hash(&id), now) {
            Some(record) => SessionWrite::Start { record, replaces },
            None => SessionWrite::Unwritable,
        };
        SavedSession {
            jar: session::with_cookie(self.jar, id, secure, lifetime),
            write: Some(write),
        }
    }

    /// Nothing to write: the cookie stays as the browser sent it.
    pub fn unsaved(self) -> SavedSession {
        SavedSession::unchanged(self.jar)
    }

    /// The session changes hands (sign-in, sign-up, an accepted invitation, a marketplace
    /// sign-in, an operator's login): a new CSRF token, and at the next save a new session
    /// id, the old one ended. A token or a cookie someone saw or planted before no longer
    /// works after.
    pub fn changes_hands(&mut self) {
        self.session.csrf = session::random_token(32);
        self.rotate = true;
    }

    /// Ends this session (sign-out): its row is deleted, so a copy of the cookie on another
    /// device is dead too, and the browser is told to drop the cookie.
    pub async fn end(self, state: &AppState) -> Result<SavedSession, PageError> {
        if let Some(loaded) = &self.loaded {
            state
                .engine
                .end_session(&session::id_hash(&loaded.id))
                .await
                .map_err(|e| session::unavailable(&e))?;
        }
        Ok(self.forget(state))
    }

    /// Tells the browser to drop its cookie, storing nothing (the session was ended already).
    pub fn forget(self, state: &AppState) -> SavedSession {
        SavedSession::unchanged(session::without_cookie(
            self.jar,
            state.settings.secure_cookies,
        ))
    }
}

/// A signed-in buyer-side user, as the store knows them now (role included). Without one the
/// browser is sent to `/signin`; the sessions of a user who was removed end on the way.
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
        let browser = Browser::from_request_parts(parts, state).await?;
        let Some(session_user) = &browser.session.user else {
            return Err(Redirect::to("/signin").into_response());
        };
        match state
            .engine
            .signed_in_user(session_user.user_id, session_user.tenant_id)
            .await
        {
            Ok(Some(user)) => Ok(Self { user, browser }),
            // Removed from the account since signing in: their sessions end here.
            Ok(None) => {
                if let Err(error) = state.engine.end_user_sessions(session_user.user_id).await {
                    return Err(session::unavailable(&error).into_response());
                }
                Err((browser.forget(state), Redirect::to("/signin")).into_response())
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
        let browser = Browser::from_request_parts(parts, state).await?;
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
            .map(|a| session::operator_key(&a.email, &a.password_hash));
        if current.is_some() && current == browser.session.admin_key {
            return Ok(Self { name, browser });
        }
        // Removed: every session of theirs ends. Password changed: this one (sessions
        // signed in with the new password carry on; other old ones end at their next use).
        tracing::warn!(operator = %name, "operator session ended: removed from [admin] users or password changed");
        let saved = match current {
            None => match state.engine.end_operator_sessions(&name).await {
                Ok(_) => Ok(browser.forget(state)),
                Err(error) => Err(session::unavailable(&error)),
            },
            Some(_) => browser.end(state).await,
        };
        match saved {
            Ok(saved) => Err((saved, Redirect::to("/admin/login")).into_response()),
            Err(page) => Err(page.into_response()),
        }
    }
}
