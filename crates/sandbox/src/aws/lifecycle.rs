//! The buyer side: purchases (agreement + registration token) and the agreement lifecycle, with
//! the notification each step sends (SNS or EventBridge, as the product is configured).

use serde_json::json;
use time::OffsetDateTime;

use super::{
    AwsSandbox, NotificationMode, OfferConfig, OfferKind, ProductConfig, eventbridge, random_id,
    state::{Agreement, ChannelPartner, SubscriptionAction, SubscriptionState},
};

/// A purchase made through [`AwsSandbox::purchase`].
#[derive(Debug, Clone)]
pub struct Purchase {
    pub registration_token: String,
    pub agreement_id: String,
    pub customer_identifier: String,
    pub buyer_account_id: String,
    pub license_arn: String,
    pub product_code: String,
    pub offer_id: String,
    pub offer_kind: OfferKind,
}

impl Purchase {
    pub(super) fn of(ag: &Agreement) -> Self {
        Self {
            registration_token: ag.registration_token.clone(),
            agreement_id: ag.agreement_id.clone(),
            customer_identifier: ag.customer_identifier.clone(),
            buyer_account_id: ag.buyer_account_id.clone(),
            license_arn: ag.license_arn.clone(),
            product_code: ag.product_code.clone(),
            offer_id: ag.offer_id.clone(),
            offer_kind: ag.offer_kind,
        }
    }
}

/// When an agreement for `offer` made at `now` ends: (contract end, free-trial end).
pub(super) fn term_ends(
    offer: &OfferConfig,
    now: OffsetDateTime,
) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    match offer.kind {
        OfferKind::Subscription => (None, None),
        OfferKind::Contract | OfferKind::ContractWithConsumption => {
            let months = i64::from(offer.duration_months.unwrap_or(12));
            (Some(now + time::Duration::days(30 * months)), None)
        }
        OfferKind::FreeTrial => {
            let days = i64::from(offer.trial_days.unwrap_or(30));
            (None, Some(now + time::Duration::days(days)))
        }
    }
}

/// A new LicenseArn of the seller's account.
pub(super) fn new_license_arn(seller_account_id: &str) -> String {
    format!(
        "arn:aws:license-manager::{seller_account_id}:license/l-{}",
        random_id(32)
    )
}

impl AwsSandbox {
    /// Create an agreement for `offer` of `product_code` for `buyer_account_id` and return its
    /// registration token (what the buyer's browser posts to the landing page).
    pub fn issue_registration_token(
        &self,
        product_code: &str,
        offer: OfferKind,
        buyer_account_id: &str,
    ) -> anyhow::Result<String> {
        Ok(self
            .purchase(product_code, offer, buyer_account_id)?
            .registration_token)
    }

    /// Like [`Self::issue_registration_token`], returning every identifier of the purchase.
    pub fn purchase(
        &self,
        product_code: &str,
        offer: OfferKind,
        buyer_account_id: &str,
    ) -> anyhow::Result<Purchase> {
        let product = self
            .config
            .product(product_code)
            .ok_or_else(|| anyhow::anyhow!("unknown product code {product_code}"))?;
        let offer_cfg = product
            .offers
            .iter()
            .find(|o| o.kind == offer)
            .ok_or_else(|| anyhow::anyhow!("product {product_code} has no {offer:?} offer"))?;
        self.purchase_offer(product, offer_cfg, buyer_account_id)
    }

    pub(super) fn purchase_offer(
        &self,
        product: &ProductConfig,
        offer: &OfferConfig,
        buyer_account_id: &str,
    ) -> anyhow::Result<Purchase> {
        if buyer_account_id.len() != 12 || !buyer_account_id.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!("buyer account id must be 12 digits");
        }
        let now = self.now();
        let mut st = self.lock();
        let key = format!("{buyer_account_id}/{}", product.product_code);
        let customer_identifier = st
            .customer_ids
            .entry(key)
            .or_insert_with(|| random_id(11).to_uppercase())
            .clone();
        let agreement_id = format!("agmt-{}", random_id(25));
        let license_arn = new_license_arn(&self.config.seller_account_id);
        let token = format!("sandbox-token-{}", random_id(48));
        let (end_time, trial_end_time) = term_ends(offer, now);
        let agreement = Agreement {
            agreement_id: agreement_id.clone(),
            product_code: product.product_code.clone(),
            offer_id: offer.id.clone(),
            offer_kind: offer.kind,
            buyer_account_id: buyer_account_id.to_owned(),
            customer_identifier,
            license_arn,
            state: SubscriptionState::Pending,
            created_at: now,
            start_time: now,
            end_time,
            trial_end_time,
            quantities: offer.quantities.clone(),
            registration_token: token.clone(),
            initial_agreement_id: None,
            predecessor: None,
            successor: None,
            license_ended: false,
            channel_partner: offer.channel_partner.then(|| ChannelPartner {
                account_id: self.config.channel_partner_account_id.clone(),
                resale_authorization_id: format!("resaleauthz-{}", random_id(13)),
            }),
            updated_at: None,
        };
        let purchase = Purchase::of(&agreement);
        st.tokens.insert(token, agreement_id.clone());
        st.agreements.insert(agreement_id, agreement);
        self.persist(&st);
        Ok(purchase)
    }

    /// Move an agreement through its lifecycle and notify the seller the way the product is
    /// configured: SNS (subscription topic, queue + HTTP) or EventBridge events (queue).
    /// SubscribeSuccess → Purchase Agreement Created + License Updated; UnsubscribePending →
    /// Purchase Agreement Ended; UnsubscribeSuccess → License Deprovisioned; SubscribeFail has
    /// no EventBridge event.
    pub async fn send_subscription_event(
        &self,
        agreement_id: &str,
        action: SubscriptionAction,
    ) -> anyhow::Result<()> {
        let (agreement, product) = {
            let mut st = self.lock();
            let ag = st
                .agreements
                .get_mut(agreement_id)
                .ok_or_else(|| anyhow::anyhow!("unknown agreement {agreement_id}"))?;
            ag.state = match action {
                SubscriptionAction::SubscribeSuccess => SubscriptionState::Subscribed,
                SubscriptionAction::SubscribeFail => SubscriptionState::Failed,
                SubscriptionAction::UnsubscribePending => SubscriptionState::UnsubscribePending,
                SubscriptionAction::UnsubscribeSuccess => SubscriptionState::Unsubscribed,
            };
            ag.updated_at = Some(self.now());
            if matches!(
                action,
                SubscriptionAction::UnsubscribePending | SubscriptionAction::UnsubscribeSuccess
            ) && ag.end_time.is_none_or(|e| e > self.now())
            {
                ag.end_time = Some(self.now());
            }
            let ag = ag.clone();
            self.persist(&st);
            let product = self
                .config
                .product(&ag.product_code)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("unknown product {}", ag.product_code))?;
            (ag, product)
        };
        match product.notification_mode {
            NotificationMode::Sns => {
                let message = json!({
                    "action": action.as_str(),
                    "customer-identifier": agreement.customer_identifier,
                    "product-code": agreement.product_code,
                    "offer-identifier": agreement.offer_id,
                    "isFreeTrialTermPresent": if agreement.offer_kind == OfferKind::FreeTrial { "true" } else { "false" },
                });
                self.sns_publish("subscription", &product.product_code, &message.to_string())
                    .await
            }
            NotificationMode::Eventbridge => {
                use eventbridge::EventKind;
                let kinds: &[EventKind] = match action {
                    SubscriptionAction::SubscribeSuccess => {
                        &[EventKind::Created, EventKind::LicenseUpdated]
                    }
                    SubscriptionAction::SubscribeFail => &[],
                    SubscriptionAction::UnsubscribePending => &[EventKind::Ended],
                    SubscriptionAction::UnsubscribeSuccess => &[EventKind::LicenseDeprovisioned],
                };
                for kind in kinds {
                    self.eventbridge_publish(*kind, &agreement, &product);
                }
                Ok(())
            }
        }
    }

    /// Change an agreement's contract quantities and notify `entitlement-updated` (SNS) or
    /// Purchase Agreement Amended + License Updated (EventBridge).
    pub async fn update_entitlements(
        &self,
        agreement_id: &str,
        quantities: &[(&str, i64)],
    ) -> anyhow::Result<()> {
        let (agreement, product) = {
            let mut st = self.lock();
            let ag = st
                .agreements
                .get_mut(agreement_id)
                .ok_or_else(|| anyhow::anyhow!("unknown agreement {agreement_id}"))?;
            let product = self
                .config
                .product(&ag.product_code)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("unknown product {}", ag.product_code))?;
            for (dim, qty) in quantities {
                if product.dimension(dim).is_none() {
                    anyhow::bail!("unknown dimension {dim}");
                }
                ag.quantities.insert((*dim).to_owned(), *qty);
            }
            ag.updated_at = Some(self.now());
            let ag = ag.clone();
            self.persist(&st);
            (ag, product)
        };
        match product.notification_mode {
            NotificationMode::Sns => {
                let message = json!({
                    "action": "entitlement-updated",
                    "customer-identifier": agreement.customer_identifier,
                    "product-code": agreement.product_code,
                });
                self.sns_publish("entitlement", &product.product_code, &message.to_string())
                    .await
            }
            NotificationMode::Eventbridge => {
                self.eventbridge_publish(eventbridge::EventKind::Amended, &agreement, &product);
                self.eventbridge_publish(
                    eventbridge::EventKind::LicenseUpdated,
                    &agreement,
                    &product,
                );
                Ok(())
            }
        }
    }
}
