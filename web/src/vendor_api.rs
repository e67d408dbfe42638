//! The API the vendor's product calls: entitlement checks and a tenant's entitlements.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use marketlink_core::{ProductId, Scope, TenantId};
use marketlink_engine::entitlements::{Decision, Grant};
use serde::{Deserialize, Serialize};

use crate::{AppError, AppState, api_auth::ApiCaller};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/check", get(check)).route(
        "/api/v1/tenants/{id}/entitlements",
        get(tenant_entitlements),
    )
}

#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    tenant: Option<String>,
    product: Option<String>,
    feature: Option<String>,
    quantity: Option<i64>,
}

fn tenant_id(raw: &str) -> Result<TenantId, AppError> {
    raw.parse()
        .map_err(|_| AppError::bad_request("invalid_tenant", format!("`{raw}` is not a tenant id")))
}

/// `GET /api/v1/check?tenant=&product=&feature=&quantity=`: allow or deny, with the reason.
async fn check(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(query): Query<CheckQuery>,
) -> Result<Json<Decision>, AppError> {
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
    let now = state.clock.now();
    state.keys.count(caller.key.id, "check", now);
    Ok(Json(state.engine.entitlements.check(
        tenant,
        &product,
        query.feature.as_deref().filter(|f| !f.is_empty()),
        query.quantity,
        now,
    )))
}

#[derive(Debug, Serialize)]
struct TenantEntitlements {
    tenant_id: TenantId,
    subscriptions: Vec<GrantView>,
}

#[derive(Debug, Serialize)]
struct GrantView {
    #[serde(flatten)]
    grant: Grant,
    /// Features the current plan grants, from the catalog.
    features: Vec<String>,
}

/// `GET /api/v1/tenants/{id}/entitlements`: every subscription of the tenant.
async fn tenant_entitlements(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<TenantEntitlements>, AppError> {
    caller.require(Scope::EntitlementsRead)?;
    let tenant = tenant_id(&id)?;
    caller.require_tenant(tenant)?;
    state
        .keys
        .count(caller.key.id, "entitlements", state.clock.now());
    let grants = state.engine.entitlements.subscriptions(tenant);
    if grants.is_empty() {
        // Distinguish "no such tenant" from "a tenant with nothing yet".
        state.store.get_tenant(tenant).await?;
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
            GrantView { grant, features }
        })
        .collect();
    Ok(Json(TenantEntitlements {
        tenant_id: tenant,
        subscriptions,
    }))
}
