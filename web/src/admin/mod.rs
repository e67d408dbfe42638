//! The operators' admin portal: tenants, subscriptions by marketplace and status, a
//! subscription's timeline, dead letters with retry, manual set-up requests, unverified
//! sign-up addresses to confirm, usage, API keys, the audit log and webhook deliveries. Behind its own sign-in (`[admin] users`), every form
//! CSRF-protected, lists paged by cursor.
//!
//! Handlers take the [`Operator`](crate::extract::Operator) extractor, ask the engine, and
//! lay the answer out as tables ([`table`]).

mod audit;
mod keys;
mod login;
mod onboarding;
mod overview;
mod queues;
mod subscriptions;
mod table;
mod usage;
mod verifications;

use axum::{
    Router,
    routing::{get, post},
};
use marketlink_engine::Actor;
use marketlink_store::StoreError;
use serde::{Deserialize, Serialize};

use crate::{AppState, extract::Operator, pages::PageError};

/// An operator allowed into the portal; the hash comes from `marketlink admin hash-password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    pub email: String,
    pub password_hash: String,
}

impl std::fmt::Debug for AdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash can be attacked offline: keep it out of logs (the configuration is Debug).
        f.debug_struct("AdminUser")
            .field("email", &self.email)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(login::page).post(login::login))
        .route("/admin/logout", post(login::logout))
        .route("/admin", get(overview::overview))
        .route("/admin/tenants", get(overview::tenants))
        .route("/admin/subscriptions", get(subscriptions::list))
        .route("/admin/subscriptions/{id}", get(subscriptions::one))
        .route("/admin/dead", get(queues::dead))
        .route("/admin/dead/{queue}/{id}/retry", post(queues::retry))
        .route("/admin/onboarding", get(onboarding::list))
        .route("/admin/onboarding/{id}/approve", post(onboarding::approve))
        .route("/admin/onboarding/{id}/decline", post(onboarding::decline))
        .route("/admin/usage", get(usage::usage))
        .route("/admin/verifications", get(verifications::list))
        .route(
            "/admin/verifications/{id}/confirm",
            post(verifications::confirm),
        )
        .route("/admin/api-keys", get(keys::page).post(keys::create))
        .route("/admin/api-keys/{prefix}/revoke", post(keys::revoke))
        .route("/admin/audit", get(audit::audit))
        .route("/admin/webhooks", get(queues::webhooks))
        .route("/admin/webhooks/{id}/replay", post(queues::replay_webhook))
}

/// The operator as the audit log names them.
fn actor(operator: &Operator) -> Actor {
    Actor::Operator(operator.name.clone())
}

/// A store failure is ours, not the operator's: logged, shown as the generic error page.
fn internal(error: StoreError) -> PageError {
    PageError::internal(&error)
}
