//! Shared HTTP helpers of the API modules: the handler state, the api-version check, JSON bodies
//! and HTML pages. Depends on no API module (the router lives in `routes`).

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Body,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{Shared, errors::ApiError};

pub type AppState = Arc<Shared>;

pub const API_VERSION: &str = "2018-08-31";

/// 200 with a JSON body.
pub fn json_ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `api-version=2018-08-31` is required on every marketplace call.
pub fn check_api_version(query: &HashMap<String, String>) -> Result<(), ApiError> {
    match query.get("api-version").map(String::as_str) {
        Some(API_VERSION) => Ok(()),
        Some(other) => Err(ApiError::fulfillment(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersion",
            format!("The api-version '{other}' is not supported; use {API_VERSION}."),
        )),
        None => Err(ApiError::fulfillment(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        )),
    }
}

/// Parses a JSON request body, with the Fulfillment error shape on failure.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("A JSON request body is required."));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))
}

/// An HTML page.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Body::from(body),
    )
        .into_response()
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
