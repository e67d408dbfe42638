//! The marketplace APIs' error answers: one type, [`ApiError`], with the body shape of each API
//! family (Fulfillment `{"error": {"code", "message"}}`, Metering `{"code", "message"}`) and the
//! `x-ms-error-response: true` header the real service adds.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// An error from the marketplace APIs, with the body each API family uses.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    /// Fulfillment API shape: `{"error": {"code", "message"}}`.
    pub fn fulfillment(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": {"code": code, "message": message.into()}}),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::fulfillment(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::fulfillment(StatusCode::NOT_FOUND, "EntityNotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::fulfillment(StatusCode::CONFLICT, "Conflict", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        response.headers_mut().insert(
            HeaderName::from_static("x-ms-error-response"),
            HeaderValue::from_static("true"),
        );
        response
    }
}

pub fn fulfillment_error(status: StatusCode, code: &str, message: String) -> ApiError {
    ApiError::fulfillment(status, code, message)
}

/// Metering API error shape: `{"code", "message"}`.
pub fn metering_error(status: StatusCode, code: &str, message: String) -> ApiError {
    ApiError {
        status,
        body: json!({"code": code, "message": message}),
    }
}
