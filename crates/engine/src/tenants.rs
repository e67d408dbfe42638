//! The vendor's customer accounts as operators and the vendor API see them: search, one
//! tenant with its subscriptions. A tenant-bound caller sees only its own tenant.

use marketlink_core::{Subscription, Tenant, TenantId};
use marketlink_store::{StoreError, SubscriptionFilter};

use crate::Engine;

/// Subscriptions listed with one tenant; a tenant holds a handful in practice.
const MAX_SUBSCRIPTIONS: u32 = 1000;

/// A tenant with its subscriptions.
#[derive(Debug)]
pub struct TenantDetail {
    pub tenant: Tenant,
    pub subscriptions: Vec<Subscription>,
}

/// Whether `tenant`'s name or contact email contains `query` (any case; empty matches all).
fn matches(tenant: &Tenant, query: &str) -> bool {
    let query = query.trim().to_lowercase();
    query.is_empty()
        || tenant.name.to_lowercase().contains(&query)
        || tenant.contact_email.to_lowercase().contains(&query)
}

impl Engine {
    /// One page of tenants whose name or contact email contains `query`, oldest first, after
    /// the cursor `after`. `viewer` is the caller's own tenant when it is bound to one: then
    /// that tenant is the whole list.
    pub async fn search_tenants(
        &self,
        viewer: Option<TenantId>,
        query: &str,
        after: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        let Some(own) = viewer else {
            return self.store.search_tenants(Some(query), after, limit).await;
        };
        let tenant = self.store.get_tenant(own).await?;
        Ok(
            if after.is_none_or(|a| own.0 > a.0) && matches(&tenant, query) {
                vec![tenant]
            } else {
                Vec::new()
            },
        )
    }

    /// The tenant; `NotFound("tenant")` when there is none.
    pub async fn tenant(&self, id: TenantId) -> Result<Tenant, StoreError> {
        self.store.get_tenant(id).await
    }

    /// The tenant with its subscriptions.
    pub async fn tenant_detail(&self, id: TenantId) -> Result<TenantDetail, StoreError> {
        let tenant = self.store.get_tenant(id).await?;
        let subscriptions = self
            .store
            .list_subscriptions(&SubscriptionFilter {
                tenant_id: Some(id),
                limit: MAX_SUBSCRIPTIONS,
                ..SubscriptionFilter::default()
            })
            .await?;
        Ok(TenantDetail {
            tenant,
            subscriptions,
        })
    }
}
