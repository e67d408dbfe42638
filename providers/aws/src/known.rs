//! What this process has learned about agreements: agreement id and license id → the
//! `ExternalRef` that `resolve` produced.
//!
//! EventBridge Purchase Agreement events name only the agreement (no LicenseArn, no product
//! code), and SNS messages name only the CustomerIdentifier. This memory joins them to the
//! reference `resolve` built, so events and landing pages agree on `external_id`. It is a cache,
//! not a store: after a restart the adapter falls back to the Agreement API
//! (GetAgreementEntitlements) and GetEntitlements, and gives up (no event, logged) when those
//! cannot tell either.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use marketlink_core::ExternalRef;

/// Bound on remembered entries; the memory is cleared when it is reached.
const CAP: usize = 50_000;

#[derive(Debug, Default)]
pub(crate) struct KnownSubscriptions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_agreement: HashMap<String, ExternalRef>,
    by_license: HashMap<String, ExternalRef>,
    by_classic_id: HashMap<String, ExternalRef>,
}

/// The trailing `l-…` id of a LicenseArn (AWS's own examples disagree on the `arn:` prefix).
pub(crate) fn license_key(arn: &str) -> &str {
    arn.rsplit(['/', ':']).next().unwrap_or(arn)
}

impl KnownSubscriptions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn remember(&self, agreement_id: Option<&str>, external: &ExternalRef) {
        let mut inner = self.lock();
        if inner.by_agreement.len() + inner.by_license.len() + inner.by_classic_id.len() > CAP {
            *inner = Inner::default();
        }
        if let Some(id) = agreement_id {
            inner.by_agreement.insert(id.to_owned(), external.clone());
        }
        if let Some(arn) = &external.license_arn {
            inner
                .by_license
                .insert(license_key(arn).to_owned(), external.clone());
        }
        inner
            .by_classic_id
            .insert(external.external_id.clone(), external.clone());
    }

    pub(crate) fn by_agreement(&self, agreement_id: &str) -> Option<ExternalRef> {
        self.lock().by_agreement.get(agreement_id).cloned()
    }

    pub(crate) fn by_license(&self, arn: &str) -> Option<ExternalRef> {
        self.lock().by_license.get(license_key(arn)).cloned()
    }

    pub(crate) fn by_external_id(&self, external_id: &str) -> Option<ExternalRef> {
        self.lock().by_classic_id.get(external_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_keys_ignore_the_prefix() {
        assert_eq!(
            license_key("arn:aws:license-manager::111122223333:license/l-abc"),
            "l-abc"
        );
        assert_eq!(
            license_key("aws:license-manager:us-east-1:123456789012:l-abc"),
            "l-abc"
        );
    }
}
