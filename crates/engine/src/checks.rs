//! Entitlement checks as the API answers them: from the in-memory index once it is warm, and
//! from the database (two indexed point queries for the tenant) while it is still loading, so
//! a replica serves from its first second at any size (ADR 0022).

use marketlink_core::{ProductId, TenantId};
use marketlink_store::StoreError;
use time::OffsetDateTime;

use crate::{
    Engine,
    entitlements::{Decision, Grant},
};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Index,
    /// The index was still loading.
    Database,
}

impl Engine {
    /// May `tenant` use `feature` of `product` (that many units, with `quantity`)?
    pub async fn check_entitlement(
        &self,
        tenant: TenantId,
        product: &ProductId,
        feature: Option<&str>,
        quantity: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<(Decision, Source), StoreError> {
        let index = &self.entitlements;
        if index.is_warm() {
            let decision = index.check(tenant, product, feature, quantity, now);
            return Ok((decision, Source::Index));
        }
        let grants = self.stored_grants(tenant).await?;
        let grants: Vec<&Grant> = grants.iter().collect();
        let decision = index.decide(&grants, product, feature, quantity, now);
        Ok((decision, Source::Database))
    }

    /// Every subscription of `tenant` with what it grants; from the database while the index
    /// is loading.
    pub async fn tenant_grants(&self, tenant: TenantId) -> Result<Vec<Grant>, StoreError> {
        if self.entitlements.is_warm() {
            return Ok(self.entitlements.subscriptions(tenant));
        }
        self.stored_grants(tenant).await
    }

    async fn stored_grants(&self, tenant: TenantId) -> Result<Vec<Grant>, StoreError> {
        let rows = self.store.tenant_grants(tenant).await?;
        Ok(rows.into_iter().map(Grant::from).collect())
    }
}
