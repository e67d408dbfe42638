//! SNS message signature verification (SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA).
//!
//! The trust anchor is the SigningCertURL: it must be `https://` on an allowed SNS host (the
//! sandbox: `http://127.0.0.1:PORT` when explicitly allowed) and end in `.pem`; the certificate
//! is fetched once per URL and cached. The certificate chain itself is not validated beyond
//! TLS to the AWS host, as AWS's own verifiers do.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use marketlink_core::ProviderError;
use rsa::{RsaPublicKey, pkcs1v15::VerifyingKey, pkcs8::DecodePublicKey, signature::Verifier};
use serde_json::{Map, Value};
use x509_cert::{
    Certificate,
    der::{DecodePem, Encode},
};

/// Largest certificate we download.
const MAX_CERT_BYTES: usize = 64 * 1024;

fn unauthenticated(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unauthenticated(reason.into())
}

/// The string SNS signs: `Key\nValue\n` for the listed keys, in order.
pub fn string_to_sign(envelope: &Map<String, Value>) -> Result<String, ProviderError> {
    let kind = envelope
        .get("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| unauthenticated("SNS message without Type"))?;
    // (key, required)
    let keys: &[(&str, bool)] = match kind {
        "Notification" => &[
            ("Message", true),
            ("MessageId", true),
            ("Subject", false),
            ("Timestamp", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            ("Message", true),
            ("MessageId", true),
            ("SubscribeURL", true),
            ("Timestamp", true),
            ("Token", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        other => {
            return Err(unauthenticated(format!(
                "unknown SNS message Type {other:?}"
            )));
        }
    };
    let mut out = String::new();
    for (key, required) in keys {
        match envelope.get(*key) {
            Some(Value::String(v)) => {
                out.push_str(key);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            None | Some(Value::Null) if !required => {}
            _ => {
                return Err(unauthenticated(format!(
                    "SNS {kind} without a string {key}"
                )));
            }
        }
    }
    Ok(out)
}

/// Whether `host` matches `pattern`, `*` standing for exactly one DNS label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .all(|(p, h)| (*p == "*" && !h.is_empty()) || p.eq_ignore_ascii_case(h))
}

/// Verifies SNS signatures; caches certificates by URL.
pub struct SnsVerifier {
    hosts: Vec<String>,
    allow_http: bool,
    http: reqwest::Client,
    keys: Mutex<HashMap<String, RsaPublicKey>>,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("hosts", &self.hosts)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

impl SnsVerifier {
    pub fn new(hosts: Vec<String>, allow_http: bool) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::Configuration(format!("HTTP client: {e}")))?;
        Ok(Self {
            hosts,
            allow_http,
            http,
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<String, RsaPublicKey>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks scheme and host of a SigningCertURL / SubscribeURL.
    pub fn check_url(&self, url: &str, what: &str) -> Result<url::Url, ProviderError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| unauthenticated(format!("{what} {url:?} is not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            s => {
                return Err(unauthenticated(format!(
                    "{what} must use https, not {s}: {url}"
                )));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(unauthenticated(format!("{what} carries credentials")));
        }
        let host = parsed.host_str().unwrap_or_default();
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        if !self.hosts.iter().any(|p| host_matches(p, &host)) {
            return Err(unauthenticated(format!(
                "{what} host {host} is not an allowed SNS host ({})",
                self.hosts.join(", ")
            )));
        }
        Ok(parsed)
    }

    async fn public_key(&self, cert_url: &str) -> Result<RsaPublicKey, ProviderError> {
        if let Some(key) = self.keys().get(cert_url) {
            return Ok(key.clone());
        }
        let url = self.check_url(cert_url, "SigningCertURL")?;
        if !url.path().ends_with(".pem") {
            return Err(unauthenticated(format!(
                "SigningCertURL {cert_url} is not a .pem file"
            )));
        }
        let response = self.http.get(url).send().await.map_err(|e| {
            ProviderError::retryable(format!("cannot fetch the SNS certificate: {e}"))
        })?;
        if !response.status().is_success() {
            return Err(ProviderError::retryable(format!(
                "SNS certificate {cert_url}: HTTP {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::retryable(format!("SNS certificate body: {e}")))?;
        if body.len() > MAX_CERT_BYTES {
            return Err(unauthenticated("SNS certificate too large"));
        }
        let key = public_key_from_pem(&body)?;
        self.keys().insert(cert_url.to_owned(), key.clone());
        Ok(key)
    }

    /// Confirms an SNS subscription: GET of the SubscribeURL, which must be on an allowed host.
    pub async fn confirm(&self, subscribe_url: &str) -> Result<(), ProviderError> {
        let url = self.check_url(subscribe_url, "SubscribeURL")?;
        let response = self.http.get(url).send().await.map_err(|e| {
            ProviderError::retryable(format!("cannot reach the SNS SubscribeURL: {e}"))
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 {
            Err(ProviderError::retryable(format!(
                "SNS SubscribeURL answered HTTP {status}"
            )))
        } else {
            Err(ProviderError::Rejected {
                code: "SubscriptionConfirmationRefused".into(),
                message: format!("SNS SubscribeURL answered HTTP {status}"),
            })
        }
    }

    /// Verifies the envelope's signature with the certificate at its SigningCertURL.
    pub async fn verify(&self, envelope: &Map<String, Value>) -> Result<(), ProviderError> {
        let data = string_to_sign(envelope)?;
        let field = |k: &str| {
            envelope
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| unauthenticated(format!("SNS message without {k}")))
        };
        let version = field("SignatureVersion")?;
        let signature = B64
            .decode(field("Signature")?)
            .map_err(|_| unauthenticated("SNS Signature is not base64"))?;
        let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
            .map_err(|_| unauthenticated("SNS Signature is malformed"))?;
        let key = self.public_key(field("SigningCertURL")?).await?;
        let ok = match version {
            "1" => VerifyingKey::<sha1::Sha1>::new(key)
                .verify(data.as_bytes(), &signature)
                .is_ok(),
            "2" => VerifyingKey::<sha2::Sha256>::new(key)
                .verify(data.as_bytes(), &signature)
                .is_ok(),
            v => {
                return Err(unauthenticated(format!(
                    "unsupported SNS SignatureVersion {v:?}"
                )));
            }
        };
        if ok {
            Ok(())
        } else {
            Err(unauthenticated(
                "SNS signature does not match the message (forged or altered)",
            ))
        }
    }
}

/// The RSA public key of a PEM X.509 certificate.
pub fn public_key_from_pem(pem: &[u8]) -> Result<RsaPublicKey, ProviderError> {
    let cert = Certificate::from_pem(pem)
        .map_err(|e| unauthenticated(format!("SNS certificate is not a PEM X.509: {e}")))?;
    let der = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| unauthenticated(format!("SNS certificate key: {e}")))?;
    RsaPublicKey::from_public_key_der(&der)
        .map_err(|e| unauthenticated(format!("SNS certificate key is not RSA: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches(
            "sns.us-east-1.amazonaws.com",
            "sns.us-east-1.amazonaws.com"
        ));
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "sns.eu-west-1.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.evil.com.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.us-east-1.amazonaws.com",
            "sns.us-east-1.amazonaws.com.evil.io"
        ));
        assert!(host_matches("127.0.0.1:9090", "127.0.0.1:9090"));
        assert!(!host_matches("127.0.0.1:9090", "127.0.0.1:9091"));
    }

    #[test]
    fn string_to_sign_orders_keys_and_skips_missing_subject() {
        let env: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "t",
            "Message": "hello", "Timestamp": "2026-01-01T00:00:00.000Z",
            "SignatureVersion": "2", "Signature": "x", "SigningCertURL": "u"
        }))
        .unwrap();
        assert_eq!(
            string_to_sign(&env).unwrap(),
            "Message\nhello\nMessageId\nm\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        let mut bad = env.clone();
        bad.remove("TopicArn");
        assert!(string_to_sign(&bad).is_err());
    }

    #[test]
    fn urls_must_be_https_on_allowed_hosts() {
        let v = SnsVerifier::new(vec!["sns.us-east-1.amazonaws.com".into()], false).unwrap();
        assert!(
            v.check_url(
                "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
                "c"
            )
            .is_ok()
        );
        assert!(
            v.check_url("http://sns.us-east-1.amazonaws.com/x.pem", "c")
                .is_err()
        );
        assert!(v.check_url("https://evil.example/x.pem", "c").is_err());
        assert!(
            v.check_url("https://user@sns.us-east-1.amazonaws.com/x.pem", "c")
                .is_err()
        );
    }
}
