//! SNS notifications of classic listings: `subscribe-*`/`unsubscribe-*` become lifecycle events,
//! `entitlement-updated` a fresh read of GetEntitlements; a SubscriptionConfirmation is
//! confirmed by fetching its SubscribeURL.

use marketlink_core::{
    ExternalRef, Lifecycle, Marketplace, MarketplaceEvent, ProviderError, SubscriptionDirectory,
};
use serde_json::Value;

use super::{entitlements_changed, lifecycle, malformed, parse_time, str_at};
use crate::{AwsProvider, config::TopicKind, refs::classic_ref};

impl AwsProvider {
    pub(super) async fn interpret_sns(
        &self,
        payload: &Value,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let envelope = payload
            .get("envelope")
            .ok_or_else(|| malformed("stored SNS payload without envelope"))?;
        let kind = str_at(envelope, "/Type").unwrap_or("");
        match kind {
            "SubscriptionConfirmation" => {
                let url = str_at(envelope, "/SubscribeURL")
                    .ok_or_else(|| malformed("SubscriptionConfirmation without SubscribeURL"))?;
                self.sns.confirm(url).await?;
                tracing::info!(
                    topic = str_at(envelope, "/TopicArn"),
                    "SNS subscription confirmed"
                );
                return Ok(Vec::new());
            }
            "Notification" => {}
            other => {
                tracing::warn!(kind = other, "SNS message ignored");
                return Ok(Vec::new());
            }
        }
        let topic = str_at(envelope, "/TopicArn").unwrap_or("");
        let (product, topic_kind) = self.config.product_for_topic(topic).ok_or_else(|| {
            ProviderError::Configuration(format!("topic {topic} is no longer configured"))
        })?;
        let occurred_at = str_at(envelope, "/Timestamp")
            .and_then(parse_time)
            .ok_or_else(|| malformed("SNS envelope without Timestamp"))?;
        let message = payload
            .get("message")
            .ok_or_else(|| malformed("stored SNS payload without message"))?;
        let action = str_at(message, "/action").unwrap_or("");
        let customer = str_at(message, "/customer-identifier")
            .ok_or_else(|| malformed("SNS message without customer-identifier"))?;
        let classic_id = ExternalRef::aws_classic_id(customer, &product.product_code);
        // As stored (with the account and licence ResolveCustomer named), else as SNS names it.
        let subscription = directory
            .get(&Marketplace::AWS, &classic_id)
            .await?
            .unwrap_or_else(|| classic_ref(customer, &product.product_code, None, None));
        let event = |l: Lifecycle, free_trial: Option<bool>| {
            vec![lifecycle(
                subscription.clone(),
                occurred_at,
                l,
                action,
                free_trial,
            )]
        };
        Ok(match (topic_kind, action) {
            (TopicKind::Subscription, "subscribe-success") => {
                let trial = str_at(message, "/isFreeTrialTermPresent") == Some("true");
                event(Lifecycle::Activate, Some(trial))
            }
            (TopicKind::Subscription, "subscribe-fail") => event(Lifecycle::Fail, None),
            (TopicKind::Subscription, "unsubscribe-pending") => event(Lifecycle::BeginCancel, None),
            (TopicKind::Subscription, "unsubscribe-success") => event(Lifecycle::Cancel, None),
            (_, "entitlement-updated") => {
                let entitlements = self.get_entitlements(&subscription).await?;
                vec![entitlements_changed(
                    subscription,
                    occurred_at,
                    entitlements,
                )]
            }
            (_, other) => {
                tracing::warn!(action = other, topic, "SNS action not understood; ignored");
                Vec::new()
            }
        })
    }
}
