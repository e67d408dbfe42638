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

/// The Fulfillment API's 403 for a missing, invalid or expired token or another app's token
/// (OpenAPI saasapi.v2.json: 403 on every operation, no schema). The body is a bare JSON string,
/// as captured from the real service (Azure/Commercial-Marketplace-SaaS-Accelerator issue #607:
/// `Content-Length: 403` = this text with its quotes).
pub fn fulfillment_forbidden() -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        body: Value::String(FULFILLMENT_FORBIDDEN.into()),
    }
}

const FULFILLMENT_FORBIDDEN: &str = "The authorization token is invalid, expired, missing or this \
    request is attempting to access a SaaS subscription for an offer that was published with a \
    different Azure AD App ID from the one used to create the authorization token. Please make \
    sure the authorization token is created using the same Azure AD App ID as the Azure AD App ID \
    Id set for the offer in Technical Details tab in Partner Center.";

/// The Metering API's 403 (meteringapi.v1.json: 403 "User is unauthorized to make this call."),
/// in the shape captured from the real service (Commercial-Marketplace-SaaS-Accelerator issues
/// #103 and #775: `{"message": "Client is not authorized for this usage resource.", "code":
/// "Forbidden"}`). Which message a bad token gets is not documented: the same one [DERIVED].
pub fn metering_forbidden() -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        body: json!({"message": "Client is not authorized for this usage resource.", "code": "Forbidden"}),
    }
}
