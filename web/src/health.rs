//! Liveness and readiness probes.

use axum::{Json, Router, extract::State, routing::get};
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

/// The database answers and carries every migration this build expects.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| AppError::unavailable("database unreachable", e))?;
    let pending = state
        .store
        .pending_migrations()
        .await
        .map_err(|e| AppError::unavailable("database unreachable", e))?;
    if !pending.is_empty() {
        return Err(AppError::Unavailable {
            message: format!(
                "database is missing {} migration(s); run `marketlink migrate`",
                pending.len()
            ),
        });
    }
    Ok(Json(json!({ "status": "ready", "database": "ok" })))
}
