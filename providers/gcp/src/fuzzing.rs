//! Entry points for fuzz targets (`fuzz/`, docs/security.md "Fuzzing"): the parsers of what
//! Google sends, reached without network or clock. Not an API: hidden from the docs and free
//! to change with the targets.

use marketlink_core::{Marketplace, ProviderError};
use serde_json::Value;

use crate::{keys, model, pubsub};

/// A push or pulled body as `authenticate` reads it after the token check: the Procurement
/// message inside the base64 `data`.
pub fn pubsub_body(body: &[u8]) -> Result<Value, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        message: pubsub::PubsubMessage,
    }
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| ProviderError::retryable(format!("not an envelope: {e}")))?;
    pubsub::notice_of(&envelope.message).map(|(payload, _)| payload)
}

/// A `{kid: PEM certificate}` key map; returns the kids of the RSA keys it holds.
pub fn key_map(body: &[u8]) -> Result<Vec<String>, ProviderError> {
    keys::parse_key_map(body).map(|keys| keys.into_keys().collect())
}

/// An entitlement as Procurement returns it, and the reference it becomes.
pub fn entitlement(body: &[u8]) -> Option<(String, Option<marketlink_core::SubscriptionStatus>)> {
    let entitlement: model::Entitlement = serde_json::from_slice(body).ok()?;
    let marketplace = Marketplace::parse("gcp").ok()?;
    let reference = entitlement.external_ref(&marketplace);
    let _ = entitlement.term();
    Some((reference.external_id, entitlement.status()))
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::STANDARD};

    use super::*;

    #[test]
    fn parsers_refuse_garbage_without_panicking() {
        assert!(pubsub_body(b"{").is_err());
        assert!(pubsub_body(br#"{"message":{"data":"!!"}}"#).is_err());
        let data = STANDARD.encode(r#"{"eventId":"e","providerId":"p","entitlement":{"id":"x"}}"#);
        let body = format!(r#"{{"message":{{"data":"{data}","messageId":"1"}}}}"#);
        assert_eq!(pubsub_body(body.as_bytes()).unwrap()["eventId"], "e");
        assert!(key_map(br#"{"k":"not a pem"}"#).unwrap().is_empty());
        assert!(key_map(b"[]").is_err());
        let parsed =
            entitlement(br#"{"name":"providers/p/entitlements/e1","state":"ENTITLEMENT_ACTIVE"}"#);
        assert_eq!(
            parsed,
            Some((
                "e1".into(),
                Some(marketlink_core::SubscriptionStatus::Active)
            ))
        );
        assert_eq!(entitlement(br#"{"offerEndTime":"yesterday"}"#), None);
    }
}
