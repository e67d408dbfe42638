//! API keys the vendor's product uses: format, scopes and verification rules.
//!
//! A key reads `mlk_<prefix>_<secret>`. The prefix (public) finds the key; only a SHA-256 of
//! the secret is stored, and it is compared in constant time.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Report usage.
    #[serde(rename = "usage:write")]
    UsageWrite,
    /// Read entitlements and check features.
    #[serde(rename = "entitlements:read")]
    EntitlementsRead,
    /// Everything, including tenants and keys.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::UsageWrite, Scope::EntitlementsRead, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsageWrite => "usage:write",
            Self::EntitlementsRead => "entitlements:read",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope `{s}` (use usage:write, entitlements:read or admin)")
            })
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// A key limited to one tenant's data; `None` for vendor-wide keys.
    pub tenant_id: Option<TenantId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKey {
    /// `admin` includes every other scope.
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none()
            && (self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin))
    }

    /// May this key see `tenant`'s data?
    pub fn sees_tenant(&self, tenant: TenantId) -> bool {
        self.tenant_id.is_none_or(|own| own == tenant)
    }
}

/// The parts of a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub prefix: &'a str,
    pub secret: &'a str,
}

/// Splits `mlk_<prefix>_<secret>`; anything else is not a key.
pub fn parse_key(key: &str) -> Option<PresentedKey<'_>> {
    let rest = key.strip_prefix("mlk_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let valid =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (valid(prefix, 12) && valid(secret, 40)).then_some(PresentedKey { prefix, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_strictly() {
        let key = format!("mlk_{}_{}", "a".repeat(12), "B".repeat(40));
        let parsed = parse_key(&key).unwrap();
        assert_eq!(parsed.prefix.len(), 12);
        assert!(parse_key("mlk_short_secret").is_none());
        assert!(parse_key(&key.replace("mlk_", "xyz_")).is_none());
        assert!(parse_key(&format!("mlk_{}_{}!", "a".repeat(12), "B".repeat(39))).is_none());
    }

    #[test]
    fn admin_implies_every_scope_and_revocation_removes_all() {
        let mut key = ApiKey {
            id: Uuid::now_v7(),
            name: "ops".into(),
            prefix: "p".into(),
            scopes: vec![Scope::Admin],
            tenant_id: None,
            created_at: time::macros::datetime!(2026-01-01 00:00 UTC),
            revoked_at: None,
        };
        assert!(key.allows(Scope::UsageWrite) && key.allows(Scope::EntitlementsRead));
        key.scopes = vec![Scope::EntitlementsRead];
        assert!(!key.allows(Scope::UsageWrite));
        key.revoked_at = Some(key.created_at);
        assert!(!key.allows(Scope::EntitlementsRead));
        assert_eq!("usage:write".parse::<Scope>(), Ok(Scope::UsageWrite));
        assert!("write".parse::<Scope>().is_err());
    }

    #[test]
    fn tenant_keys_see_only_their_tenant() {
        let own = TenantId::new();
        let key = ApiKey {
            id: Uuid::now_v7(),
            name: "t".into(),
            prefix: "p".into(),
            scopes: vec![Scope::EntitlementsRead],
            tenant_id: Some(own),
            created_at: time::macros::datetime!(2026-01-01 00:00 UTC),
            revoked_at: None,
        };
        assert!(key.sees_tenant(own));
        assert!(!key.sees_tenant(TenantId::new()));
    }
}
