//! Getting a saved session into the database. A handler's `browser.save(&state)` returns a
//! [`SavedSession`]: the cookie, plus the write, carried in the response's extensions to
//! [`store_saved`], which stores it after the handler. A page is sent only once its session
//! is stored: if the write fails, the browser gets a 503 instead (a page whose session was
//! not kept must not claim success, say a sign-in).

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, IntoResponseParts, Response, ResponseParts},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_store::SessionRecord;

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

/// Middleware: stores the session the handler saved; answers 503 when it cannot.
pub async fn store_saved(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let Some(write) = response.extensions_mut().remove::<SessionWrite>() else {
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
