//! `GET/POST /api/v1/api-keys` and `DELETE /api/v1/api-keys/{prefix}`: the vendor's API keys,
//! for keys with the `admin` scope. The secret is shown once, on creation; creation and
//! revocation go to the audit log as the admin portal's do. A tenant-bound key sees, creates
//! and revokes only keys bound to its own tenant.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
};
use marketlink_core::{ApiKey, Scope, TenantId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{ErrorBody, tenant_id};
use crate::{AppError, AppState, api_auth::ApiCaller};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", get(list).post(create))
        .route("/api/v1/api-keys/{prefix}", delete(revoke))
}

/// An API key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    #[schema(value_type = String, format = Uuid)]
    id: uuid::Uuid,
    name: String,
    /// The public part of the key (`mlk_<prefix>_...`); names the key in URLs and logs.
    prefix: String,
    /// `usage:write`, `entitlements:read`, `admin`.
    #[schema(value_type = Vec<String>, example = json!(["entitlements:read"]))]
    scopes: Vec<Scope>,
    /// The one tenant this key may see; `null` for a vendor-wide key.
    #[schema(value_type = Option<String>, format = Uuid)]
    tenant_id: Option<TenantId>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            tenant_id: k.tenant_id,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyList {
    api_keys: Vec<ApiKeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApiKey {
    /// What the key is for, e.g. `product backend`.
    name: String,
    /// At least one of `usage:write`, `entitlements:read`, `admin`.
    #[schema(example = json!(["entitlements:read"]))]
    scopes: Vec<String>,
    /// Limit the key to one tenant. A tenant-bound caller may only create keys for its own
    /// tenant (the default for such a caller).
    #[schema(format = Uuid)]
    tenant_id: Option<String>,
}

/// A new key and its secret, which is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKeyView,
    /// `mlk_<prefix>_<secret>`: store it now; marketlink keeps only a hash.
    secret: String,
}

/// Lists API keys, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    responses(
        (status = 200, description = "Every key this caller may see", body = ApiKeyList),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<ApiKeyList>, AppError> {
    caller.require(Scope::Admin)?;
    caller.count(&state, "api_keys");
    // A tenant-bound caller sees only keys bound to its tenant (not vendor-wide ones).
    let keys = state.engine.api_keys(caller.key.tenant_id).await?;
    Ok(Json(ApiKeyList {
        api_keys: keys.into_iter().map(ApiKeyView::from).collect(),
    }))
}

/// Creates a key; the answer carries its secret, shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedApiKey),
        (status = 400, description = "Missing name, unknown or no scope, bad tenant id", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such tenant, or not visible to this key", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedApiKey>), AppError> {
    caller.require(Scope::Admin)?;
    let new: NewApiKey = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request("invalid_body", format!("invalid request: {e}")))?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::bad_request(
            "invalid_name",
            "`name` must be 1 to 200 characters",
        ));
    }
    let scopes = new
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| AppError::bad_request("invalid_scope", m))?;
    if scopes.is_empty() {
        return Err(AppError::bad_request(
            "invalid_scope",
            "give at least one scope: usage:write, entitlements:read or admin",
        ));
    }
    let tenant = match new
        .tenant_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(raw) => Some(tenant_id(raw)?),
        None => caller.key.tenant_id,
    };
    if let Some(tenant) = tenant {
        caller.require_tenant(tenant)?;
    }
    caller.count(&state, "api_keys");
    let (key, secret, hash) = crate::api_auth::new_key(name, scopes, tenant, state.now());
    // A tenant that does not exist answers 404 `tenant`.
    state
        .engine
        .create_api_key(&caller.actor(), &key, &hash)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: key.into(),
            secret,
        }),
    ))
}

/// Revokes a key; it stops working within 5 seconds on every replica. Revoking twice is
/// harmless.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{prefix}",
    tag = "api-keys",
    params(("prefix" = String, Path, description = "The key's prefix (`mlk_<prefix>_...`)")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyView),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such key, or not visible to this key", body = ErrorBody),
    ),
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(prefix): Path<String>,
) -> Result<Json<ApiKeyView>, AppError> {
    caller.require(Scope::Admin)?;
    caller.count(&state, "api_keys");
    // Another tenant's key looks missing to a tenant-bound caller.
    let revoked = state
        .engine
        .revoke_api_key(&caller.actor(), caller.key.tenant_id, &prefix)
        .await?;
    state.keys.forget(&revoked.prefix);
    Ok(Json(revoked.into()))
}
