//! `GET /api/v1/tenants` and `GET /api/v1/tenants/{id}`: the vendor's customer accounts, for
//! keys with the `admin` scope. A tenant-bound key sees only its own tenant.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use marketlink_core::{Scope, Subscription, Tenant, TenantId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, tenant_id};
use crate::{AppError, AppState, api_auth::ApiCaller};

/// Page size when `limit` is not given, and the most one page holds.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tenants", get(list))
        .route("/api/v1/tenants/{id}", get(one))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantQuery {
    /// Part of the name or contact email, case-insensitive.
    q: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Tenants per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// A customer account.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantView {
    #[schema(value_type = String, format = Uuid)]
    id: TenantId,
    name: String,
    company: Option<String>,
    contact_email: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            name: t.name,
            company: t.company,
            contact_email: t.contact_email,
            created_at: t.created_at,
        }
    }
}

/// One page of tenants, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantPage {
    tenants: Vec<TenantView>,
    /// Pass as `after` for the next page; `null` on the last page.
    next: Option<String>,
}

/// A marketplace subscription of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionView {
    #[schema(value_type = String, format = Uuid)]
    id: marketlink_core::SubscriptionId,
    /// `aws` or `azure`.
    marketplace: String,
    /// The marketplace's id for it (Azure subscription id, AWS LicenseArn or customer/product).
    external_id: String,
    /// AWS ProductCode or Azure offer id.
    product_code: String,
    /// The catalog product, once known.
    product_id: Option<String>,
    plan_id: Option<String>,
    quantity: Option<u32>,
    /// `pending`, `active`, `suspended`, `unsubscribe_pending`, `cancelled` or `failed`.
    status: String,
    free_trial: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    term_start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    term_end: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> Self {
        let (term_start, term_end) = s.term.map(|t| (t.start, t.end)).unwrap_or_default();
        Self {
            id: s.id,
            marketplace: s.external.marketplace.to_string(),
            external_id: s.external.external_id,
            product_code: s.external.product_code,
            product_id: s.product_id.map(|p| p.to_string()),
            plan_id: s.plan_id.map(|p| p.to_string()),
            quantity: s.quantity,
            status: s.status.as_str().to_owned(),
            free_trial: s.free_trial,
            term_start,
            term_end,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A tenant with its subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantDetail {
    #[serde(flatten)]
    tenant: TenantView,
    subscriptions: Vec<SubscriptionView>,
}

/// Lists tenants, searching name and contact email.
#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    tag = "tenants",
    params(TenantQuery),
    responses(
        (status = 200, description = "One page of tenants", body = TenantPage),
        (status = 400, description = "Bad `after` or `limit`", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(query): Query<TenantQuery>,
) -> Result<Json<TenantPage>, AppError> {
    caller.require(Scope::Admin)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_limit",
            format!("`limit` must be 1 to {MAX_PAGE}"),
        ));
    }
    let after = match query.after.as_deref().filter(|a| !a.is_empty()) {
        Some(raw) => Some(raw.parse::<TenantId>().map_err(|_| {
            AppError::bad_request("invalid_cursor", "`after` is not a cursor from `next`")
        })?),
        None => None,
    };
    caller.count(&state, "tenants");
    let q = query.q.as_deref().unwrap_or_default();
    // A tenant-bound key: its own tenant is the whole list.
    let tenants = state
        .engine
        .search_tenants(caller.key.tenant_id, q, after, limit)
        .await?;
    let next = (tenants.len() == limit as usize)
        .then(|| tenants.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(Json(TenantPage {
        tenants: tenants.into_iter().map(TenantView::from).collect(),
        next,
    }))
}

/// One tenant with its subscriptions.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, format = Uuid, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = TenantDetail),
        (status = 400, description = "`id` is not a tenant id", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such tenant, or not visible to this key", body = ErrorBody),
    ),
)]
pub(crate) async fn one(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<TenantDetail>, AppError> {
    caller.require(Scope::Admin)?;
    let tenant = tenant_id(&id)?;
    caller.require_tenant(tenant)?;
    caller.count(&state, "tenants");
    let detail = state.engine.tenant_detail(tenant).await?;
    Ok(Json(TenantDetail {
        tenant: detail.tenant.into(),
        subscriptions: detail.subscriptions.into_iter().map(Into::into).collect(),
    }))
}
