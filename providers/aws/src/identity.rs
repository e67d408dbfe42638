//! The names AWS gives one subscription over its life, kept by the engine as aliases (core
//! `SubscriptionDirectory`): every agreement of a renewal or replacement chain, and every
//! LicenseArn. EventBridge Purchase Agreement events name only the agreement, License events
//! the agreement and the licence, SNS messages only the CustomerIdentifier; the directory joins
//! them to the subscription `resolve` or the first License Updated stored, across restarts.

use marketlink_core::Alias;

/// Alias kind of an agreement id (`agmt-…`).
pub(crate) const AGREEMENT: &str = "agreement";
/// Alias kind of a licence, by its trailing `l-…` id.
pub(crate) const LICENSE: &str = "license";

/// The trailing `l-…` id of a LicenseArn: AWS's own examples spell the ARN with and without
/// the `arn:` prefix (aws-eventbridge.md §3), so licences are compared on this id.
pub(crate) fn license_key(arn: &str) -> &str {
    arn.rsplit(['/', ':']).next().unwrap_or(arn)
}

/// The LicenseArn as stored and sent back to AWS: with the `arn:` prefix the metering model's
/// LicenseArn pattern (`^arn:aws[a-zA-Z-]*:…`) requires, whichever way AWS spelled it.
pub(crate) fn canonical_license_arn(arn: &str) -> String {
    let arn = arn.trim();
    if arn.starts_with("arn:") {
        arn.to_owned()
    } else {
        format!("arn:{arn}")
    }
}

pub(crate) fn same_license(a: &str, b: &str) -> bool {
    license_key(a) == license_key(b)
}

pub(crate) fn agreement_alias(agreement_id: &str) -> Alias {
    Alias::new(AGREEMENT, agreement_id)
}

pub(crate) fn license_alias(arn: &str) -> Alias {
    Alias::new(LICENSE, license_key(arn))
}

/// The names a purchase or event teaches: its agreement and its licence, when known.
pub(crate) fn aliases_of(agreement_id: Option<&str>, license_arn: Option<&str>) -> Vec<Alias> {
    agreement_id
        .map(agreement_alias)
        .into_iter()
        .chain(license_arn.map(license_alias))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_keys_ignore_the_prefix() {
        let with = "arn:aws:license-manager::111122223333:license/l-abc";
        let without = "aws:license-manager:us-east-1:123456789012:l-abc";
        assert_eq!(license_key(with), "l-abc");
        assert_eq!(license_key(without), "l-abc");
        assert!(same_license(with, without));
        assert!(!same_license(
            with,
            "arn:aws:license-manager::1:license/l-abd"
        ));
    }

    #[test]
    fn canonical_arns_carry_the_prefix_once() {
        assert_eq!(
            canonical_license_arn("aws:license-manager:us-east-1:123456789012:l-abc"),
            "arn:aws:license-manager:us-east-1:123456789012:l-abc"
        );
        let arn = "arn:aws:license-manager::111122223333:license/l-abc";
        assert_eq!(canonical_license_arn(arn), arn);
    }

    #[test]
    fn aliases_name_agreement_and_licence() {
        assert_eq!(
            aliases_of(Some("agmt-1"), Some("aws:lm:us-east-1:1:l-x")),
            [Alias::new(AGREEMENT, "agmt-1"), Alias::new(LICENSE, "l-x")]
        );
        assert!(aliases_of(None, None).is_empty());
    }
}
