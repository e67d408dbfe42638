//! One error type for handlers, one place that maps errors to HTTP.
//!
//! APIs answer `{"error": {"code", "message"}}` with a stable machine `code`. Internal errors
//! are logged with their cause and answered with a generic message that reveals nothing.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use marketlink_store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthorized { message: String },
    #[error("forbidden")]
    Forbidden { message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("service unavailable: {message}")]
    Unavailable { message: String },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A dependency is down; logs the cause, tells the caller only `message`.
    pub fn unavailable(
        message: &str,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        tracing::warn!(error = %cause, "{message}");
        Self::Unavailable {
            message: message.to_owned(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::BadRequest { message, .. }
            | Self::Unauthorized { message }
            | Self::Forbidden { message }
            | Self::Unavailable { message } => message.clone(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::Conflict(message) => message.clone(),
            Self::Internal(_) => "something went wrong on our side; it has been logged".into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::Domain(illegal) => Self::Conflict(illegal.to_string()),
            // Our trouble, not the caller's: 503 tells a client (and a marketplace) to retry.
            other if other.is_disk_full() => {
                tracing::error!(error = %other, "the database's disk is full: nothing was stored");
                Self::Unavailable {
                    message: "the database is unavailable right now; try again shortly".into(),
                }
            }
            other if other.is_unavailable() => Self::unavailable(
                "the database is unavailable right now; try again shortly",
                other,
            ),
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(cause) = &self {
            tracing::error!(error = ?cause, "internal error");
        }
        let body = json!({ "error": { "code": code, "message": self.public_message() } });
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_database_asks_for_a_retry() {
        let (status, body) = body_of(AppError::from(StoreError::unavailable(
            "connection lost".into(),
        )))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        let (status, _) = body_of(AppError::from(StoreError::Corrupt("x".into()))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    async fn body_of(error: AppError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_variant_maps_to_status_and_stable_code() {
        let cases = [
            (
                AppError::bad_request("invalid_quantity", "quantity must not be negative"),
                400,
                "invalid_quantity",
            ),
            (
                AppError::Unauthorized {
                    message: "missing API key".into(),
                },
                401,
                "unauthorized",
            ),
            (
                AppError::Forbidden {
                    message: "scope".into(),
                },
                403,
                "forbidden",
            ),
            (AppError::NotFound("tenant"), 404, "not_found"),
            (AppError::Conflict("already linked".into()), 409, "conflict"),
            (
                AppError::Unavailable {
                    message: "db".into(),
                },
                503,
                "unavailable",
            ),
            (
                AppError::Internal(anyhow::anyhow!("secret detail")),
                500,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            let (got_status, body) = body_of(error).await;
            assert_eq!(got_status.as_u16(), status);
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"].is_string());
        }
    }

    #[tokio::test]
    async fn internal_errors_reveal_nothing() {
        let (_, body) = body_of(AppError::Internal(anyhow::anyhow!("password=hunter2"))).await;
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn store_errors_map_to_client_errors() {
        let (status, _) = body_of(StoreError::Conflict("x".into()).into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = body_of(StoreError::NotFound("subscription").into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
