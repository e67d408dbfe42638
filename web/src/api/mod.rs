//! The vendor-facing JSON API (`/api/v1/...`), authenticated by API key.

mod usage;

use axum::{Router, http::HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AppError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().merge(usage::routes())
}

/// Checks `Authorization: Bearer <key>` (or `X-Api-Key`) against the configured keys' SHA-256
/// digests, in constant time per key and without stopping at the first match.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(presented) = presented else {
        return Err(AppError::Unauthorized {
            message: "an API key is required: `Authorization: Bearer <key>`".into(),
        });
    };
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut matched = subtle::Choice::from(0);
    for known in &state.engine.metering.api_key_hashes {
        matched |= known.ct_eq(&digest);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AppError::Unauthorized {
            message: "the API key is not valid".into(),
        })
    }
}
