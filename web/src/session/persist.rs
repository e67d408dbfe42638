//! Getting a saved session into the database. A handler's `browser.save(&state)` returns a
//! [`SavedSession`]: the cookie, plus the write, carried in the response's extensions to
//! [`store_saved`], which stores it after the handler. A page is sent only once its session
//! is stored: if the write fails, the browser gets a 503 instead (a page whose session was
//! not kept must not claim success, say a sign-in).

use std::sync::{Arc, Mutex};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, IntoResponseParts, Response, ResponseParts},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_store::SessionRecord;
use time::Duration;

use crate::{AppState, pages::PageError};

/// The session cookie to send and the database write to make, for a response.
#[must_use]
pub struct SavedSession {
    pub(crate) jar: PrivateCookieJar,
    pub(crate) write: Option<SessionWrite>,
}

/// A session to store after the handler: a new one (first save or a new id at sign-in,
/// ending the one it `replaces`), or an existing one written back.
#[derive(Debug, Clone)]
pub(crate) enum SessionWrite {
    Start {
        record: SessionRecord,
        replaces: Option<String>,
    },
    Update(SessionRecord),
    /// The session could not be written out: the response must not go as if it were.
    Unwritable,
}

impl SavedSession {
    /// The cookie jar as it came, and nothing to store.
    pub fn unchanged(jar: PrivateCookieJar) -> Self {
        Self { jar, write: None }
    }
}

impl IntoResponseParts for SavedSession {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Some(write) = self.write {
            res.extensions_mut().insert(write);
        }
        self.jar.into_response_parts(res)
    }
}

/// The page for a session the database cannot load or keep right now.
pub fn unavailable(cause: &dyn std::fmt::Display) -> PageError {
    tracing::error!(error = %cause, "cannot load or store a browser session");
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "We could not keep your session",
        "Our database did not answer in time, so this browser's session could not be kept.",
    )
    .step("Wait a few seconds and try again; if you were signing in, sign in again.")
    .retry_after(5)
}

/// A loaded session whose stored idle expiry is stale, noted when the request's session was
/// loaded. Pages that only read (the admin portal, account sub-pages) save nothing; the
/// session is written back for them after the handler, so using any page keeps it alive.
#[derive(Clone, Default)]
pub(crate) struct PendingTouch(Arc<Mutex<Option<Touch>>>);

pub(crate) struct Touch {
    pub(crate) id: String,
    pub(crate) record: SessionRecord,
    pub(crate) lifetime: Duration,
}

impl PendingTouch {
    pub(crate) fn note(&self, touch: Touch) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(touch);
        }
    }

    fn take(&self) -> Option<Touch> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Middleware: stores the session the handler saved; answers 503 when it cannot. A session
/// the handler neither saved nor ended has its idle lifetime extended when it is stale.
pub async fn store_saved(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let touch = PendingTouch::default();
    request.extensions_mut().insert(touch.clone());
    let mut response = next.run(request).await;
    let Some(write) = response.extensions_mut().remove::<SessionWrite>() else {
        if let Some(touch) = touch.take() {
            return extend(&state, touch, response).await;
        }
        return response;
    };
    let stored = match &write {
        SessionWrite::Start { record, replaces } => state
            .engine
            .start_session(record, replaces.as_deref())
            .await
            .map(|()| true),
        SessionWrite::Update(record) => state.engine.update_session(record).await,
        SessionWrite::Unwritable => {
            return unavailable(&"the session does not serialise").into_response();
        }
    };
    match stored {
        Ok(true) => response,
        // Ended (signed out everywhere, say) while this request ran: it stays ended, and
        // the browser's next request starts afresh.
        Ok(false) => {
            tracing::debug!("a session ended while a request on it ran; left ended");
            response
        }
        Err(error) => unavailable(&error).into_response(),
    }
}

/// Writes back a session the handler only read, and sends its cookie again with a new
/// lifetime. Left alone when the handler set or dropped the cookie itself (a sign-out), or
/// the session ended meanwhile (an update never brings an ended session back).
async fn extend(state: &AppState, touch: Touch, mut response: Response) -> Response {
    if response.headers().contains_key(header::SET_COOKIE) {
        return response;
    }
    match state.engine.update_session(&touch.record).await {
        Ok(true) => {
            let secure = state.settings.secure_cookies;
            let jar = PrivateCookieJar::new(state.settings.session_key.clone());
            let jar = crate::session::with_cookie(jar, touch.id, secure, touch.lifetime);
            for cookie in jar.into_response().headers().get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Ok(false) => response,
        // The page itself is fine; the session is extended at a later request.
        Err(error) => {
            tracing::warn!(%error, "cannot extend a browser session");
            response
        }
    }
}
