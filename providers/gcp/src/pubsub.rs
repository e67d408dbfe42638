//! Pub/Sub delivery of Procurement's messages (gcp.md §2). Push: Google POSTs
//! `{"message":{"data":<base64 JSON>,"messageId","publishTime"},"subscription"}` with an OIDC
//! bearer token signed by Google (`iss` accounts.google.com, `aud` the push endpoint, `email`
//! the push service account, S17); any 2xx acks. Pull: REST `subscriptions.pull` and
//! `subscriptions.acknowledge` (Pub/Sub v1 reference). Every message is only a pointer
//! (`eventId`, `eventType`, `providerId`, `account{id}` or `entitlement{id}`).

use std::collections::HashSet;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, Validation};
use marketlink_core::{AuthenticatedMessage, InboundMessage, ProviderError, PulledMessage};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{GcpProvider, PULL_CHANNEL, PUSH_CHANNEL, config::GOOGLE_ISSUERS};

/// A Procurement message is a few hundred bytes; Pub/Sub's own limit is 10 MB.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct PubsubMessage {
    #[serde(default)]
    data: String,
    #[serde(rename = "messageId", default)]
    message_id: String,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    message: PubsubMessage,
}

#[derive(Debug, Deserialize)]
struct OidcClaims {
    email: String,
    #[serde(default)]
    email_verified: bool,
    exp: i64,
}

/// The Procurement message inside `data`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notice {
    #[serde(default)]
    pub(crate) event_id: String,
    /// Absent on some account messages (S6).
    #[serde(default)]
    pub(crate) event_type: String,
    #[serde(default)]
    pub(crate) provider_id: String,
    pub(crate) account: Option<Pointer>,
    pub(crate) entitlement: Option<Pointer>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Pointer {
    pub(crate) id: String,
}

fn malformed(why: impl Into<String>) -> ProviderError {
    ProviderError::Rejected {
        code: "malformed".into(),
        message: why.into(),
    }
}

/// Decodes a Pub/Sub message's `data` into the Procurement message.
pub(crate) fn notice_of(message: &PubsubMessage) -> Result<(Value, Notice), ProviderError> {
    let data = STANDARD
        .decode(message.data.trim())
        .map_err(|e| malformed(format!("data is not base64: {e}")))?;
    let payload: Value =
        serde_json::from_slice(&data).map_err(|e| malformed(format!("data is not JSON: {e}")))?;
    let notice: Notice = serde_json::from_value(payload.clone())
        .map_err(|e| malformed(format!("not a Procurement message: {e}")))?;
    Ok((payload, notice))
}

impl GcpProvider {
    pub(crate) async fn authenticate_message(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        if message.body.len() > MAX_MESSAGE {
            return Err(malformed(
                "message larger than a Procurement message can be",
            ));
        }
        let envelope = match message.channel.as_str() {
            PUSH_CHANNEL => {
                self.verify_push_token(message).await?;
                serde_json::from_slice::<Envelope>(&message.body)
                    .map_err(|e| malformed(format!("not a push envelope: {e}")))?
            }
            // Pulled over our own authenticated call to Pub/Sub.
            PULL_CHANNEL => serde_json::from_slice::<Envelope>(&message.body)
                .map_err(|e| malformed(format!("not a pulled message: {e}")))?,
            other => {
                return Err(ProviderError::Unauthenticated(format!(
                    "unknown channel {other}"
                )));
            }
        };
        let (payload, notice) = notice_of(&envelope.message)?;
        if notice.provider_id != self.config.provider_id {
            return Err(malformed(format!(
                "message for provider {:?}, we are {:?}",
                notice.provider_id, self.config.provider_id
            )));
        }
        // eventId is Procurement's own id, the same whether pushed or pulled.
        let dedup_key = if notice.event_id.is_empty() {
            envelope.message.message_id.clone()
        } else {
            notice.event_id.clone()
        };
        if dedup_key.is_empty() {
            return Err(malformed("neither eventId nor messageId"));
        }
        let kind = if notice.event_type.is_empty() {
            "account".to_owned()
        } else {
            notice.event_type
        };
        Ok(AuthenticatedMessage {
            marketplace: self.marketplace.clone(),
            dedup_key,
            kind,
            received_at: self.clock.now(),
            payload,
        })
    }

    /// The push request's `Authorization: Bearer` OIDC token (S17).
    async fn verify_push_token(&self, message: &InboundMessage) -> Result<(), ProviderError> {
        let unauthenticated = |why: String| ProviderError::Unauthenticated(why);
        let Some(push) = &self.config.push else {
            return Err(unauthenticated(
                "Pub/Sub push is not configured ([gcp.push])".into(),
            ));
        };
        let token = message
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("no bearer token".into()))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthenticated(format!("not a JWT: {e}")))?;
        let kid = header.kid.ok_or_else(|| unauthenticated("no kid".into()))?;
        let key = self
            .oidc_keys
            .key(&kid)
            .await?
            .ok_or_else(|| unauthenticated(format!("kid {kid} is not Google's")))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims = HashSet::from(["iss", "aud", "exp"].map(String::from));
        validation.set_audience(&[push.audience.as_str()]);
        match &push.issuer {
            Some(issuer) => validation.set_issuer(&[issuer.as_str()]),
            None => validation.set_issuer(&GOOGLE_ISSUERS),
        }
        let claims = jsonwebtoken::decode::<OidcClaims>(token, &key, &validation)
            .map_err(|e| unauthenticated(format!("push token refused: {e}")))?
            .claims;
        if self.clock.now().unix_timestamp() > claims.exp + self.skew_secs() {
            return Err(unauthenticated("push token expired".into()));
        }
        if !claims.email_verified || claims.email != push.service_account_email {
            return Err(unauthenticated(format!(
                "push token of {}, not the push service account",
                claims.email
            )));
        }
        Ok(())
    }

    fn subscription_url(&self, verb: &str) -> Option<String> {
        let subscription = self.config.subscription.as_ref()?;
        Some(format!(
            "{}/v1/{subscription}:{verb}",
            self.config.pubsub_url.trim_end_matches('/')
        ))
    }

    pub(crate) async fn pull_messages(
        &self,
        max: u32,
    ) -> Result<Vec<PulledMessage>, ProviderError> {
        let Some(url) = self.subscription_url("pull") else {
            return Ok(Vec::new());
        };
        let body = json!({"maxMessages": max.clamp(1, 1000)});
        let answer = self.api.call(Method::POST, &url, Some(&body)).await?;
        let received = answer
            .get("receivedMessages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut pulled = Vec::with_capacity(received.len());
        for item in received {
            let (Some(ack_id), Some(message)) = (
                item.get("ackId").and_then(Value::as_str),
                item.get("message"),
            ) else {
                continue;
            };
            let body = serde_json::to_vec(&json!({"message": message}))
                .map_err(|e| ProviderError::retryable(e.to_string()))?;
            pulled.push(PulledMessage {
                message: InboundMessage {
                    channel: PULL_CHANNEL.into(),
                    headers: Vec::new(),
                    body,
                },
                receipt: ack_id.to_owned(),
            });
        }
        Ok(pulled)
    }

    pub(crate) async fn ack_message(&self, receipt: &str) -> Result<(), ProviderError> {
        let Some(url) = self.subscription_url("acknowledge") else {
            return Ok(());
        };
        let body = json!({"ackIds": [receipt]});
        self.api
            .call(Method::POST, &url, Some(&body))
            .await
            .map(|_| ())
    }
}
