//! Which marketplace a subscription comes from.
//!
//! An open set on purpose: a new provider crate names its own marketplace without editing core.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Serialize};

/// A marketplace identifier such as `aws` or `azure`: lowercase ASCII letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Marketplace(Cow<'static, str>);

impl Marketplace {
    pub const AWS: Marketplace = Marketplace(Cow::Borrowed("aws"));
    pub const AZURE: Marketplace = Marketplace(Cow::Borrowed("azure"));

    /// Parses a marketplace name, refusing anything that is not a short lowercase slug.
    pub fn parse(name: &str) -> Result<Self, InvalidMarketplace> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(InvalidMarketplace(name.to_owned()));
        }
        Ok(match name {
            "aws" => Self::AWS,
            "azure" => Self::AZURE,
            other => Self(Cow::Owned(other.to_owned())),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a marketplace name (use lowercase letters, digits and '-', e.g. `aws`)")]
pub struct InvalidMarketplace(pub String);

impl TryFrom<String> for Marketplace {
    type Error = InvalidMarketplace;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Marketplace> for String {
    fn from(value: Marketplace) -> Self {
        value.0.into_owned()
    }
}

impl fmt::Display for Marketplace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_and_new_marketplaces() {
        assert_eq!(Marketplace::parse("aws").unwrap(), Marketplace::AWS);
        assert_eq!(Marketplace::parse("gcp").unwrap().as_str(), "gcp");
        assert!(Marketplace::parse("").is_err());
        assert!(Marketplace::parse("AWS").is_err());
        assert!(Marketplace::parse("a b").is_err());
    }

    #[test]
    fn serde_refuses_bad_names() {
        let m: Marketplace = serde_json::from_str("\"azure\"").unwrap();
        assert_eq!(m, Marketplace::AZURE);
        assert!(serde_json::from_str::<Marketplace>("\"Az ure\"").is_err());
    }
}
