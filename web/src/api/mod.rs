//! The vendor-facing JSON API (`/api/v1/...`), authenticated by API key: entitlement checks,
//! usage reports, tenants and API keys. The types every handler shares (the error body, ids
//! in paths) live here; `openapi` reads the handlers' annotations, never the other way.

pub(crate) mod entitlements;
pub(crate) mod keys;
pub(crate) mod tenants;
pub(crate) mod usage;

use axum::{Router, http::HeaderMap};
use marketlink_core::TenantId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::{AppError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(usage::routes())
        .merge(tenants::routes())
        .merge(keys::routes())
        .merge(entitlements::routes())
}

/// Every error: a stable machine `code` and a message for people.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    #[schema(example = "forbidden")]
    code: String,
    message: String,
}

/// A tenant id from a path or body; 400 `invalid_tenant` when it is not one.
pub(crate) fn tenant_id(raw: &str) -> Result<TenantId, AppError> {
    raw.parse()
        .map_err(|_| AppError::bad_request("invalid_tenant", format!("`{raw}` is not a tenant id")))
}

/// Who reported usage: a scoped vendor API key (`mlk_...`, scope `usage:write`) or one of
/// the keys configured in `[metering] api_keys`.
pub(crate) enum UsageCaller {
    Key(std::sync::Arc<marketlink_core::ApiKey>),
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
        state.keys.count(key.id, "usage", state.now());
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
