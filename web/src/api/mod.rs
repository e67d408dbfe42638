//! The vendor-facing JSON API (`/api/v1/...`), authenticated by API key.
//! (`/api/v1/check` and `/api/v1/tenants/{id}/entitlements` live in `vendor_api`.)

pub(crate) mod keys;
pub(crate) mod tenants;
pub(crate) mod usage;

use axum::{Router, http::HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AppError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(usage::routes())
        .merge(tenants::routes())
        .merge(keys::routes())
}

/// Who reported usage: a scoped vendor API key (`mlk_...`, scope `usage:write`) or one of
/// the keys configured in `[metering] api_keys`.
pub(crate) enum UsageCaller {
    Key(marketlink_core::ApiKey),
    Configured,
}

/// Authenticates a usage report: scoped API keys first, then the configured keys' SHA-256
/// digests, compared in constant time per key and without stopping at the first match.
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<UsageCaller, AppError> {
    let presented = crate::api_auth::presented_key(headers);
    if let Some(key) = presented.filter(|k| k.starts_with("mlk_")) {
        let key = crate::api_auth::verify(state, key).await?;
        if !key.allows(marketlink_core::Scope::UsageWrite) {
            return Err(AppError::Forbidden {
                message: "this API key lacks the `usage:write` scope".into(),
            });
        }
        state.keys.count(key.id, "usage", state.clock.now());
        return Ok(UsageCaller::Key(key));
    }
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
        Ok(UsageCaller::Configured)
    } else {
        Err(AppError::Unauthorized {
            message: "the API key is not valid".into(),
        })
    }
}
