//! The vendor's product catalog: products, where they are listed, plans, dimensions, features.

use serde::{Deserialize, Serialize};

use crate::{Marketplace, PlanId, ProductId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DimensionKind {
    /// Usage reported by the product and billed by the marketplace (AWS usage dimension,
    /// Azure custom meter).
    #[default]
    Metered,
    /// A quantity bought up front (AWS contract dimension, Azure seats).
    Contract,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The id the marketplace knows: AWS "Dimension API name", Azure dimension id.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: DimensionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: PlanId,
    #[serde(default)]
    pub name: Option<String>,
    /// Features this plan grants, checked by the entitlement API.
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
}

/// Where a product is listed: one row per marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    pub marketplace: Marketplace,
    /// AWS ProductCode or Azure offerId.
    pub product_code: String,
    /// Where a buyer can subscribe (shown when a feature is denied).
    #[serde(default)]
    pub listing_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    #[serde(default)]
    pub listings: Vec<Listing>,
    #[serde(default)]
    pub plans: Vec<Plan>,
}

impl Product {
    pub fn plan(&self, plan: &PlanId) -> Option<&Plan> {
        self.plans.iter().find(|p| &p.id == plan)
    }
}

/// All products, looked up by marketplace product code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub products: Vec<Product>,
}

impl Catalog {
    pub fn product(&self, id: &ProductId) -> Option<&Product> {
        self.products.iter().find(|p| &p.id == id)
    }

    /// The product listed on `marketplace` under `product_code`.
    pub fn by_listing(&self, marketplace: &Marketplace, product_code: &str) -> Option<&Product> {
        self.products.iter().find(|p| {
            p.listings
                .iter()
                .any(|l| &l.marketplace == marketplace && l.product_code == product_code)
        })
    }

    /// Checks that ids are unique and every listing appears once, so look-ups are unambiguous.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen_products = std::collections::HashSet::new();
        let mut seen_listings = std::collections::HashSet::new();
        for product in &self.products {
            if !seen_products.insert(&product.id) {
                return Err(format!("product `{}` is defined twice", product.id));
            }
            for listing in &product.listings {
                if !seen_listings.insert((&listing.marketplace, &listing.product_code)) {
                    return Err(format!(
                        "{} product code `{}` is listed under two products",
                        listing.marketplace, listing.product_code
                    ));
                }
            }
            let mut plans = std::collections::HashSet::new();
            for plan in &product.plans {
                if !plans.insert(&plan.id) {
                    return Err(format!(
                        "plan `{}` is defined twice in product `{}`",
                        plan.id, product.id
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, code: &str) -> Product {
        Product {
            id: ProductId::new(id),
            name: id.into(),
            listings: vec![Listing {
                marketplace: Marketplace::AWS,
                product_code: code.into(),
                listing_url: None,
            }],
            plans: vec![],
        }
    }

    #[test]
    fn looks_up_by_listing_and_rejects_ambiguity() {
        let catalog = Catalog {
            products: vec![product("a", "p1"), product("b", "p2")],
        };
        catalog.validate().unwrap();
        assert_eq!(
            catalog.by_listing(&Marketplace::AWS, "p2").unwrap().id,
            ProductId::new("b")
        );
        assert!(catalog.by_listing(&Marketplace::AZURE, "p2").is_none());
        let clash = Catalog {
            products: vec![product("a", "p1"), product("b", "p1")],
        };
        assert!(clash.validate().unwrap_err().contains("p1"));
    }
}
