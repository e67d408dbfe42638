//! `GET /api/v1/check` and `GET /api/v1/tenants/{id}/entitlements`: what the vendor's
//! product calls on its hot path, answered from the engine's in-memory entitlement index (from
//! the database while that index is still loading after a start).

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use marketlink_core::{Entitlement, ProductId, Scope, SubscriptionId, TenantId};
use marketlink_engine::entitlements::{Decision, Grant};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, tenant_id};
use crate::{AppError, AppState, api_auth::ApiCaller};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/check", get(check)).route(
        "/api/v1/tenants/{id}/entitlements",
        get(tenant_entitlements),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// The tenant id.
    #[param(format = Uuid, required = true)]
    tenant: Option<String>,
    /// The catalog product id.
    #[param(required = true)]
    product: Option<String>,
    /// A feature of the plan or a contract dimension.
    feature: Option<String>,
    /// How many are wanted (seats, a contract dimension's amount); not negative.
    quantity: Option<i64>,
}

/// The answer of a check.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckAnswer {
    allowed: bool,
    /// `allowed`, `not_subscribed`, `pending`, `suspended`, `cancelled`, `contract_expired`,
    /// `feature_not_in_plan` or `quantity_exceeded`.
    #[schema(value_type = String, example = "allowed")]
    reason: marketlink_engine::entitlements::Reason,
    /// A sentence for people.
    detail: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    subscription_id: Option<SubscriptionId>,
    #[schema(value_type = Option<String>)]
    plan_id: Option<marketlink_core::PlanId>,
    /// Where the customer can subscribe or upgrade.
    subscribe_url: Option<String>,
    /// The limit that applied, for quantity checks.
    limit: Option<i64>,
}

impl From<Decision> for CheckAnswer {
    fn from(d: Decision) -> Self {
        Self {
            allowed: d.allowed,
            reason: d.reason,
            detail: d.detail,
            subscription_id: d.subscription_id,
            plan_id: d.plan_id,
            subscribe_url: d.subscribe_url,
            limit: d.limit,
        }
    }
}

/// May the tenant use this feature of this product? Allow or deny, with the reason. Answered
/// from memory (from the database for the first moments after a start).
#[utoipa::path(
    get,
    path = "/api/v1/check",
    tag = "entitlements",
    params(CheckQuery),
    responses(
        (status = 200, description = "The decision", body = CheckAnswer),
        (status = 400, description = "Missing or invalid tenant, product or quantity", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `entitlements:read` scope", body = ErrorBody),
        (status = 404, description = "The tenant is not visible to this key", body = ErrorBody),
    ),
)]
pub(crate) async fn check(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(query): Query<CheckQuery>,
) -> Result<Json<CheckAnswer>, AppError> {
    caller.require(Scope::EntitlementsRead)?;
    let tenant = tenant_id(
        query
            .tenant
            .as_deref()
            .ok_or_else(|| AppError::bad_request("missing_tenant", "`tenant` is required"))?,
    )?;
    caller.require_tenant(tenant)?;
    let product = query
        .product
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| AppError::bad_request("missing_product", "`product` is required"))?;
    let product = ProductId::new(product);
    if state.engine.catalog.product(&product).is_none() {
        return Err(AppError::bad_request(
            "unknown_product",
            format!("`{product}` is not a product in the catalog"),
        ));
    }
    if query.quantity.is_some_and(|q| q < 0) {
        return Err(AppError::bad_request(
            "invalid_quantity",
            "`quantity` must not be negative",
        ));
    }
    let now = state.now();
    state.keys.count(caller.key.id, "check", now);
    let (decision, _source) = state
        .engine
        .check_entitlement(
            tenant,
            &product,
            query.feature.as_deref().filter(|f| !f.is_empty()),
            query.quantity,
            now,
        )
        .await?;
    Ok(Json(decision.into()))
}

/// Every subscription of a tenant with what it grants.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantEntitlements {
    #[schema(value_type = String, format = Uuid)]
    tenant_id: TenantId,
    subscriptions: Vec<GrantView>,
}

/// One subscription as the entitlement index holds it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GrantView {
    #[schema(value_type = String, format = Uuid)]
    subscription_id: SubscriptionId,
    /// `aws` or `azure`.
    marketplace: String,
    /// The catalog product, once known.
    #[schema(value_type = Option<String>)]
    product_id: Option<ProductId>,
    /// AWS ProductCode or Azure offer id.
    product_code: String,
    /// `pending`, `active`, `suspended`, `unsubscribe_pending`, `cancelled` or `failed`.
    #[schema(value_type = String, example = "active")]
    status: marketlink_core::SubscriptionStatus,
    #[schema(value_type = Option<String>)]
    plan_id: Option<marketlink_core::PlanId>,
    quantity: Option<u32>,
    free_trial: bool,
    /// Contract dimensions (AWS) or the seat count (Microsoft).
    entitlements: Vec<EntitlementView>,
    /// Features the current plan grants, from the catalog.
    features: Vec<String>,
}

/// One contract dimension or the plan quantity.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntitlementView {
    dimension: String,
    /// `{"type": "integer" | "double" | "boolean" | "string", "value": ...}`.
    #[schema(value_type = Object, example = json!({"type": "integer", "value": 10}))]
    value: marketlink_core::EntitlementValue,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl From<Entitlement> for EntitlementView {
    fn from(e: Entitlement) -> Self {
        Self {
            dimension: e.dimension,
            value: e.value,
            expires_at: e.expires_at,
        }
    }
}

impl GrantView {
    fn new(grant: Grant, features: Vec<String>) -> Self {
        Self {
            subscription_id: grant.subscription_id,
            marketplace: grant.marketplace,
            product_id: grant.product_id,
            product_code: grant.product_code,
            status: grant.status,
            plan_id: grant.plan_id,
            quantity: grant.quantity,
            free_trial: grant.free_trial,
            entitlements: grant.entitlements.into_iter().map(Into::into).collect(),
            features,
        }
    }
}

/// Every subscription of the tenant, with its entitlements and the plan's features.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{id}/entitlements",
    tag = "entitlements",
    params(("id" = String, Path, format = Uuid, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant's subscriptions", body = TenantEntitlements),
        (status = 400, description = "`id` is not a tenant id", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `entitlements:read` scope", body = ErrorBody),
        (status = 404, description = "No such tenant, or not visible to this key", body = ErrorBody),
    ),
)]
pub(crate) async fn tenant_entitlements(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<TenantEntitlements>, AppError> {
    caller.require(Scope::EntitlementsRead)?;
    let tenant = tenant_id(&id)?;
    caller.require_tenant(tenant)?;
    caller.count(&state, "entitlements");
    let grants = state.engine.tenant_grants(tenant).await?;
    if grants.is_empty() {
        // Distinguish "no such tenant" from "a tenant with nothing yet".
        state.engine.tenant(tenant).await?;
    }
    let subscriptions = grants
        .into_iter()
        .map(|grant| {
            let features = grant
                .product_id
                .as_ref()
                .and_then(|p| state.engine.catalog.product(p))
                .and_then(|p| {
                    grant
                        .plan_id
                        .as_ref()
                        .and_then(|id| p.plan(id))
                        .or_else(|| p.plans.first())
                })
                .map(|plan| plan.features.clone())
                .unwrap_or_default();
            GrantView::new(grant, features)
        })
        .collect();
    Ok(Json(TenantEntitlements {
        tenant_id: tenant,
        subscriptions,
    }))
}
