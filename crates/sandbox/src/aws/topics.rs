//! SNS topics (`aws-mp-subscription-notification-<product>`, `aws-mp-entitlement-notification-
//! <product>`) and their subscribers: the SNS queue (auto-confirmed) and the seller's HTTP
//! endpoint, which gets a signed SubscriptionConfirmation first and its backlog once confirmed.

use serde_json::{Map, Value};

use super::{AwsSandbox, AwsSandboxConfig, sns, state::HttpSubscription};

/// The ARN of the `kind` (subscription | entitlement) topic of a product.
pub(super) fn topic_arn(config: &AwsSandboxConfig, kind: &str, product_code: &str) -> String {
    format!(
        "arn:aws:sns:{}:{}:aws-mp-{kind}-notification-{product_code}",
        config.region, config.seller_account_id
    )
}

impl AwsSandbox {
    /// Send the SubscriptionConfirmation of every HTTP subscription not confirmed yet.
    pub async fn request_sns_confirmations(&self) -> anyhow::Result<()> {
        let pending: Vec<(String, Map<String, Value>)> = {
            let mut st = self.lock();
            let mut out = Vec::new();
            for sub in st.subscriptions.iter_mut().filter(|s| !s.confirmed) {
                sub.confirmation_sent = true;
                out.push((sub.endpoint.clone(), self.confirmation_envelope(sub)?));
            }
            out
        };
        for (endpoint, env) in pending {
            self.deliver_http(&endpoint, env).await;
        }
        Ok(())
    }

    /// Publish a raw message on `aws-mp-<kind>-notification-<product>` (kind = subscription |
    /// entitlement): to the SNS queue and to the HTTP subscription (queued while unconfirmed;
    /// the SubscriptionConfirmation goes first).
    pub async fn sns_publish(
        &self,
        kind: &str,
        product_code: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        let topic = topic_arn(&self.config, kind, product_code);
        let mut deliveries: Vec<(String, Map<String, Value>)> = Vec::new();
        {
            let mut st = self.lock();
            // SQS subscription (auto-confirmed): one envelope per subscription, own MessageId.
            let env = self.notification_envelope(&topic, message, None)?;
            let body = Value::Object(env).to_string();
            st.push_queue_message(
                &self.config.sns_queue_name,
                body,
                self.now(),
                time::Duration::ZERO,
            );
            for i in 0..st.subscriptions.len() {
                if st.subscriptions[i].topic_arn != topic {
                    continue;
                }
                let env = self.notification_envelope(&topic, message, None)?;
                let sub = &mut st.subscriptions[i];
                if sub.confirmed {
                    deliveries.push((sub.endpoint.clone(), env));
                } else {
                    sub.backlog.push(env);
                    if !sub.confirmation_sent {
                        sub.confirmation_sent = true;
                        let conf = self.confirmation_envelope(sub)?;
                        deliveries.push((sub.endpoint.clone(), conf));
                    }
                }
            }
            self.persist(&st);
        }
        for (endpoint, env) in deliveries {
            self.deliver_http(&endpoint, env).await;
        }
        Ok(())
    }

    fn sign_envelope(&self, mut env: Map<String, Value>) -> Map<String, Value> {
        let version = self.config.sns_signature_version;
        let data = sns::string_to_sign(&env);
        let signature = match sns::signer() {
            Ok(s) => s.sign(version, data.as_bytes()),
            Err(_) => String::new(),
        };
        env.insert(
            "SignatureVersion".into(),
            Value::String(version.to_string()),
        );
        env.insert("Signature".into(), Value::String(signature));
        env.insert(
            "SigningCertURL".into(),
            Value::String(self.signing_cert_url()),
        );
        env
    }

    fn sns_timestamp(&self) -> String {
        let f = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        self.now()
            .to_offset(time::UtcOffset::UTC)
            .format(&f)
            .unwrap_or_default()
    }

    fn notification_envelope(
        &self,
        topic: &str,
        message: &str,
        subject: Option<&str>,
    ) -> anyhow::Result<Map<String, Value>> {
        let message_id = uuid::Uuid::new_v4().to_string();
        let mut env = Map::new();
        env.insert("Type".into(), "Notification".into());
        env.insert("MessageId".into(), message_id.into());
        env.insert("TopicArn".into(), topic.into());
        if let Some(s) = subject {
            env.insert("Subject".into(), s.into());
        }
        env.insert("Message".into(), message.into());
        env.insert("Timestamp".into(), self.sns_timestamp().into());
        let mut env = self.sign_envelope(env);
        env.insert(
            "UnsubscribeURL".into(),
            format!(
                "{}/aws/sns/unsubscribe?SubscriptionArn={topic}:sandbox",
                self.config.public_base_url.trim_end_matches('/')
            )
            .into(),
        );
        Ok(env)
    }

    fn confirmation_envelope(&self, sub: &HttpSubscription) -> anyhow::Result<Map<String, Value>> {
        let base = self.config.public_base_url.trim_end_matches('/');
        let subscribe_url = format!(
            "{base}/aws/sns/confirm?Action=ConfirmSubscription&TopicArn={}&Token={}",
            sub.topic_arn, sub.token
        );
        let mut env = Map::new();
        env.insert("Type".into(), "SubscriptionConfirmation".into());
        env.insert("MessageId".into(), uuid::Uuid::new_v4().to_string().into());
        env.insert("Token".into(), sub.token.clone().into());
        env.insert("TopicArn".into(), sub.topic_arn.clone().into());
        env.insert(
            "Message".into(),
            format!(
                "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
                sub.topic_arn
            )
            .into(),
        );
        env.insert("SubscribeURL".into(), subscribe_url.into());
        env.insert("Timestamp".into(), self.sns_timestamp().into());
        Ok(self.sign_envelope(env))
    }

    /// Confirm an HTTP subscription (GET of the SubscribeURL); flushes its backlog.
    pub async fn confirm_subscription(&self, topic_arn: &str, token: &str) -> Option<String> {
        let (endpoint, backlog, arn) = {
            let mut st = self.lock();
            let sub = st
                .subscriptions
                .iter_mut()
                .find(|s| s.topic_arn == topic_arn && s.token == token)?;
            sub.confirmed = true;
            let backlog = std::mem::take(&mut sub.backlog);
            let out = (sub.endpoint.clone(), backlog, sub.subscription_arn.clone());
            self.persist(&st);
            out
        };
        self.log_call(
            "sns",
            "ConfirmSubscription",
            200,
            format!("{topic_arn} → {endpoint}"),
        );
        for env in backlog {
            self.deliver_http(&endpoint, env).await;
        }
        Some(arn)
    }
}
