//! How an AWS subscription is named: the `ExternalRef` of a classic (CustomerIdentifier +
//! ProductCode) or a concurrent-agreements (LicenseArn) listing. `resolve` and notifications
//! build references here, so both name a subscription the same way.

use marketlink_core::{ExternalRef, Marketplace};

use crate::identity::canonical_license_arn;

/// The reference for a classic (CustomerIdentifier + ProductCode) subscription.
pub(crate) fn classic_ref(
    customer_identifier: &str,
    product_code: &str,
    account: Option<&str>,
    license_arn: Option<&str>,
) -> ExternalRef {
    ExternalRef {
        marketplace: Marketplace::AWS,
        external_id: ExternalRef::aws_classic_id(customer_identifier, product_code),
        product_code: product_code.to_owned(),
        customer_id: customer_identifier.to_owned(),
        customer_account_id: account.map(str::to_owned),
        license_arn: license_arn.map(canonical_license_arn),
    }
}

/// The reference for a concurrent-agreements subscription: keyed on the LicenseArn, the buyer
/// named by account id (the only buyer id EventBridge events carry, so `resolve` and events
/// produce the same reference). The LicenseArn is stored in its canonical spelling.
pub(crate) fn concurrent_ref(license_arn: &str, product_code: &str, account: &str) -> ExternalRef {
    let license_arn = canonical_license_arn(license_arn);
    ExternalRef {
        marketplace: Marketplace::AWS,
        external_id: license_arn.clone(),
        product_code: product_code.to_owned(),
        customer_id: account.to_owned(),
        customer_account_id: Some(account.to_owned()),
        license_arn: Some(license_arn),
    }
}
