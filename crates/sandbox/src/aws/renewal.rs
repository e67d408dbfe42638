//! Renewals and replacements: a new agreement (new id) supersedes a live one for the same
//! buyer, product and offer, with a new LicenseArn or the same one.
//!
//! What AWS documents (../shared/specs/aws-eventbridge.md): `Purchase Agreement Created` with
//! `intent` RENEW or REPLACE carries the new agreement id, `previousAgreementId` and `product`
//! (§3, the RENEW example); the old agreement ends with status RENEWED or REPLACED (§3, Ended;
//! the AgreementStatus enum of the Agreement API model), and DescribeAgreement's
//! `initialAgreementId` links the chain (§6). A new LicenseArn arrives with a `License
//! Updated` for the new agreement (§4, per third-party reports); when the licence changes, the
//! old one's `License Deprovisioned` follows and usage on it is refused with
//! InvalidLicenseException ("usage is within the license activation period", metering model)
//! [DERIVED]. SNS listings have no renewal message: the buyer's entitlements changed, so the
//! entitlement topic says `entitlement-updated` [DERIVED from the SNS action list, spec §4].

use serde_json::json;

use super::{
    AwsSandbox, NotificationMode, ProductConfig,
    eventbridge::EventKind,
    lifecycle::{Purchase, new_license_arn, term_ends},
    random_id,
    state::{Agreement, AgreementChange, AgreementLink, SubscriptionState},
};

impl AwsSandbox {
    /// Renew a live agreement: a new agreement from the same offer's terms supersedes it (its
    /// status becomes RENEWED). `new_license`: the renewal comes with a new LicenseArn (the old
    /// licence is deprovisioned); otherwise the licence carries over.
    pub async fn renew(&self, agreement_id: &str, new_license: bool) -> anyhow::Result<Purchase> {
        self.supersede(agreement_id, AgreementChange::Renew, new_license)
            .await
    }

    /// Replace a live agreement (an agreement replacement offer): like [`Self::renew`], with
    /// intent REPLACE and status REPLACED.
    pub async fn replace(&self, agreement_id: &str, new_license: bool) -> anyhow::Result<Purchase> {
        self.supersede(agreement_id, AgreementChange::Replace, new_license)
            .await
    }

    async fn supersede(
        &self,
        agreement_id: &str,
        change: AgreementChange,
        new_license: bool,
    ) -> anyhow::Result<Purchase> {
        let (old, new, product) = self.link_successor(agreement_id, change, new_license)?;
        self.log_call(
            "buyer",
            change.intent(),
            200,
            format!(
                "{} → {} (licence {})",
                old.agreement_id,
                new.agreement_id,
                if new_license { "new" } else { "kept" }
            ),
        );
        match product.notification_mode {
            NotificationMode::Sns => {
                let message = json!({
                    "action": "entitlement-updated",
                    "customer-identifier": new.customer_identifier,
                    "product-code": new.product_code,
                });
                self.sns_publish("entitlement", &product.product_code, &message.to_string())
                    .await?;
            }
            NotificationMode::Eventbridge => {
                self.eventbridge_publish(EventKind::Created, &new, &product);
                self.eventbridge_publish(EventKind::LicenseUpdated, &new, &product);
                self.eventbridge_publish(EventKind::Ended, &old, &product);
                if new_license {
                    self.eventbridge_publish(EventKind::LicenseDeprovisioned, &old, &product);
                }
            }
        }
        Ok(Purchase::of(&new))
    }

    /// Creates the successor of a live agreement and marks the old one superseded; returns
    /// (old, new, product).
    fn link_successor(
        &self,
        agreement_id: &str,
        change: AgreementChange,
        new_license: bool,
    ) -> anyhow::Result<(Agreement, Agreement, ProductConfig)> {
        let now = self.now();
        let mut st = self.lock();
        let old = st
            .agreements
            .get(agreement_id)
            .ok_or_else(|| anyhow::anyhow!("unknown agreement {agreement_id}"))?;
        if let Some(next) = &old.successor {
            anyhow::bail!(
                "agreement {agreement_id} was already superseded by {}",
                next.agreement_id
            );
        }
        if old.state != SubscriptionState::Subscribed {
            anyhow::bail!(
                "only an active agreement renews or is replaced ({agreement_id} is {:?})",
                old.state
            );
        }
        let product = self
            .config
            .product(&old.product_code)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("unknown product {}", old.product_code))?;
        let (end_time, trial_end_time) = match product.offers.iter().find(|o| o.id == old.offer_id)
        {
            Some(offer) => term_ends(offer, now),
            None => (None, None),
        };
        let new = Agreement {
            agreement_id: format!("agmt-{}", random_id(25)),
            license_arn: if new_license {
                new_license_arn(&self.config.seller_account_id)
            } else {
                old.license_arn.clone()
            },
            state: SubscriptionState::Subscribed,
            created_at: now,
            start_time: now,
            end_time,
            trial_end_time,
            registration_token: format!("sandbox-token-{}", random_id(48)),
            initial_agreement_id: Some(old.initial_agreement_id().to_owned()),
            predecessor: Some(AgreementLink {
                agreement_id: old.agreement_id.clone(),
                change,
            }),
            successor: None,
            license_ended: false,
            updated_at: None,
            ..old.clone()
        };
        let old = {
            let old = st
                .agreements
                .get_mut(agreement_id)
                .ok_or_else(|| anyhow::anyhow!("unknown agreement {agreement_id}"))?;
            old.successor = Some(AgreementLink {
                agreement_id: new.agreement_id.clone(),
                change,
            });
            old.license_ended = new_license;
            old.updated_at = Some(now);
            if old.end_time.is_none_or(|e| e > now) {
                old.end_time = Some(now);
            }
            old.clone()
        };
        st.tokens
            .insert(new.registration_token.clone(), new.agreement_id.clone());
        st.agreements.insert(new.agreement_id.clone(), new.clone());
        self.persist(&st);
        Ok((old, new, product))
    }
}
