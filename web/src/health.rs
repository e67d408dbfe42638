//! Liveness and readiness probes.

use axum::{Json, Router, extract::State, routing::get};
use marketlink_engine::health::NotReady;
use serde_json::{Value, json};

use crate::{AppError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and carries every migration this build expects. Ready does not wait
/// for the entitlement index: checks are answered from the database until it is warm, which
/// `entitlements` reports (`loading` or `warm`).
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    match state.engine.readiness().await {
        Ok(()) => {
            let index = if state.engine.entitlements.is_warm() {
                "warm"
            } else {
                "loading"
            };
            Ok(Json(
                json!({ "status": "ready", "database": "ok", "entitlements": index }),
            ))
        }
        Err(NotReady::Unreachable(error)) => {
            Err(AppError::unavailable("database unreachable", error))
        }
        Err(NotReady::MissingMigrations(count)) => Err(AppError::Unavailable {
            message: format!("database is missing {count} migration(s); run `marketlink migrate`"),
        }),
    }
}
