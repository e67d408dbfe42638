//! The vendor's customer account. One tenant may hold subscriptions from several marketplaces
//! and products (seed 003: one account center for many products).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub company: Option<String>,
    pub contact_email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTenant {
    #[error("the account name must not be empty")]
    EmptyName,
    #[error("the account name is longer than 200 characters")]
    NameTooLong,
    #[error("`{0}` is not an email address")]
    BadEmail(String),
}

impl Tenant {
    /// Validates sign-up input and builds a new tenant.
    pub fn new(
        name: &str,
        company: Option<&str>,
        contact_email: &str,
        now: OffsetDateTime,
    ) -> Result<Self, InvalidTenant> {
        let name = name.trim();
        if name.is_empty() {
            return Err(InvalidTenant::EmptyName);
        }
        if name.chars().count() > 200 {
            return Err(InvalidTenant::NameTooLong);
        }
        let email = contact_email.trim();
        if !looks_like_email(email) {
            return Err(InvalidTenant::BadEmail(email.to_owned()));
        }
        Ok(Self {
            id: TenantId::new(),
            name: name.to_owned(),
            company: company
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            contact_email: email.to_owned(),
            created_at: now,
        })
    }
}

/// A deliberately loose check: one `@`, something on each side, a dot in the domain.
pub fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && email.len() <= 254
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_sign_up_input() {
        let now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let t = Tenant::new(" Acme ", Some(" "), "ops@acme.example", now).unwrap();
        assert_eq!(t.name, "Acme");
        assert_eq!(t.company, None);
        assert_eq!(
            Tenant::new("", None, "a@b.c", now),
            Err(InvalidTenant::EmptyName)
        );
        assert!(matches!(
            Tenant::new("x", None, "nope", now),
            Err(InvalidTenant::BadEmail(_))
        ));
        assert!(!looks_like_email("a@@b.c"));
        assert!(!looks_like_email("a b@c.d"));
        assert!(looks_like_email("a.b+c@d.example"));
    }

    #[test]
    fn owners_manage_everyone_admins_everyone_but_owners_members_no_one() {
        use PeopleChangeRefused::*;
        use Role::*;
        let roles = [Owner, Admin, Member];
        for from in roles {
            for to in roles.map(Some).into_iter().chain([None]) {
                assert_eq!(Owner.may_change(from, to), Ok(()));
                assert_eq!(Member.may_change(from, to), Err(NotAManager));
                let expected = if from == Owner || to == Some(Owner) {
                    Err(OwnersOnly)
                } else {
                    Ok(())
                };
                assert_eq!(Admin.may_change(from, to), expected, "{from:?} -> {to:?}");
            }
        }
    }
}

/// What a user may do in their tenant's account center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// Why a change to someone's place in a tenant is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeopleChangeRefused {
    #[error("only owners and admins can change who belongs to the account")]
    NotAManager,
    #[error("only an owner can change an owner or make someone an owner")]
    OwnersOnly,
    #[error("you cannot change your own role or remove yourself; ask another owner")]
    Yourself,
    #[error("the account must keep at least one owner")]
    LastOwner,
}

impl Role {
    /// Whether `self` may move someone from `from` to `to` (`None`: remove them). Owners manage
    /// everyone; admins manage admins and members but never owners. Keeping one owner is the
    /// store's check, as only it sees the whole tenant atomically.
    pub fn may_change(self, from: Role, to: Option<Role>) -> Result<(), PeopleChangeRefused> {
        match self {
            Role::Member => Err(PeopleChangeRefused::NotAManager),
            Role::Admin if from == Role::Owner || to == Some(Role::Owner) => {
                Err(PeopleChangeRefused::OwnersOnly)
            }
            Role::Admin | Role::Owner => Ok(()),
        }
    }
}

/// A person who signs in to a tenant. Emails are stored lower-cased and unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: crate::UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When and how the address was shown to be theirs; `None` until then (ADR 0021).
    #[serde(default)]
    pub email_verified: Option<EmailVerified>,
}

/// How a user's address was shown to be theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMethod {
    /// They opened the link mailed to the address.
    Link,
    /// An operator confirmed it (no mail is sent when SMTP is not configured).
    Operator,
    /// They accepted an invitation link, which only the address received.
    Invite,
}

impl VerificationMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Operator => "operator",
            Self::Invite => "invite",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "link" => Some(Self::Link),
            "operator" => Some(Self::Operator),
            "invite" => Some(Self::Invite),
            _ => None,
        }
    }
}

/// A verified address: how, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailVerified {
    pub method: VerificationMethod,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl User {
    pub fn new(
        tenant_id: TenantId,
        email: &str,
        name: Option<&str>,
        role: Role,
        now: OffsetDateTime,
    ) -> Result<Self, InvalidTenant> {
        let email = email.trim().to_lowercase();
        if !looks_like_email(&email) {
            return Err(InvalidTenant::BadEmail(email));
        }
        Ok(Self {
            id: crate::UserId::new(),
            tenant_id,
            email,
            name: name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            role,
            created_at: now,
            email_verified: None,
        })
    }
}
