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

/// The database answers and carries every migration this build expects.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    match state.engine.readiness().await {
        Ok(()) => Ok(Json(json!({ "status": "ready", "database": "ok" }))),
        Err(NotReady::Unreachable(error)) => {
            Err(AppError::unavailable("database unreachable", error))
        }
        Err(NotReady::MissingMigrations(count)) => Err(AppError::Unavailable {
            message: format!("database is missing {count} migration(s); run `marketlink migrate`"),
        }),
    }
}
