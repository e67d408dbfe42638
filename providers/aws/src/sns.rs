//! SNS message signature verification (SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA).
//!
//! The trust anchor is the SigningCertURL: it must be `https://` on an allowed SNS host (the
//! sandbox: `http://127.0.0.1:PORT` when explicitly allowed), end in `.pem` and carry no query
//! or fragment (AWS's never do; allowing them would let a forger make us fetch and cache the
//! same certificate under endless names). A certificate is fetched once (concurrent messages
//! share the download), read up to `MAX_CERT_BYTES` only, and kept in a bounded cache for a
//! day. The certificate chain itself is not validated beyond TLS to the AWS host, as AWS's own
//! verifiers do. `require_v2` refuses SHA1 signatures (SignatureVersion 1) for topics set to 2.

use std::{sync::Arc, time::Duration};

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
/// Certificates kept at most: AWS signs with one per region at a time, a few during a rotation.
const MAX_CACHED_CERTS: u64 = 64;
/// A cached certificate is fetched again after this (AWS rotates them).
const CERT_TTL: Duration = Duration::from_secs(24 * 3600);

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
    require_v2: bool,
    http: reqwest::Client,
    keys: moka::future::Cache<String, Arc<CertificateKey>>,
}

/// A cached certificate's key, ready for either signature version: a cache hit hands out an
/// `Arc`, not a copy of the modulus for every message.
struct CertificateKey {
    sha1: VerifyingKey<sha1::Sha1>,
    sha256: VerifyingKey<sha2::Sha256>,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey").finish_non_exhaustive()
    }
}

impl CertificateKey {
    fn new(key: RsaPublicKey) -> Arc<Self> {
        Arc::new(Self {
            sha1: VerifyingKey::new(key.clone()),
            sha256: VerifyingKey::new(key),
        })
    }
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("hosts", &self.hosts)
            .field("allow_http", &self.allow_http)
            .field("require_v2", &self.require_v2)
            .finish_non_exhaustive()
    }
}

impl SnsVerifier {
    pub fn new(
        hosts: Vec<String>,
        allow_http: bool,
        require_v2: bool,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::Configuration(format!("HTTP client: {e}")))?;
        Ok(Self {
            hosts,
            allow_http,
            require_v2,
            http,
            keys: moka::future::Cache::builder()
                .max_capacity(MAX_CACHED_CERTS)
                .time_to_live(CERT_TTL)
                .build(),
        })
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

    /// Checks a SigningCertURL: an allowed host, a `.pem` path, no query or fragment.
    pub fn check_cert_url(&self, cert_url: &str) -> Result<url::Url, ProviderError> {
        let url = self.check_url(cert_url, "SigningCertURL")?;
        if !url.path().ends_with(".pem") {
            return Err(unauthenticated(format!(
                "SigningCertURL {cert_url} is not a .pem file"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(unauthenticated(format!(
                "SigningCertURL {cert_url} carries a query or fragment"
            )));
        }
        Ok(url)
    }

    async fn public_key(&self, cert_url: &str) -> Result<Arc<CertificateKey>, ProviderError> {
        let url = self.check_cert_url(cert_url)?;
        self.keys
            .try_get_with(url.to_string(), self.fetch_key(url))
            .await
            .map_err(|shared| match Arc::try_unwrap(shared) {
                Ok(error) => error,
                Err(shared) => clone_error(&shared),
            })
    }

    /// Downloads a certificate, reading at most [`MAX_CERT_BYTES`].
    async fn fetch_key(&self, url: url::Url) -> Result<Arc<CertificateKey>, ProviderError> {
        let mut response = self.http.get(url.clone()).send().await.map_err(|e| {
            ProviderError::retryable(format!("cannot fetch the SNS certificate: {e}"))
        })?;
        if !response.status().is_success() {
            return Err(ProviderError::retryable(format!(
                "SNS certificate {url}: HTTP {}",
                response.status()
            )));
        }
        let too_large = || unauthenticated("SNS certificate too large");
        if response
            .content_length()
            .is_some_and(|n| n > MAX_CERT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ProviderError::retryable(format!("SNS certificate body: {e}")))?
        {
            if body.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        public_key_from_pem(&body).map(CertificateKey::new)
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
        let SignedParts {
            data,
            version,
            signature,
            cert_url,
        } = self.signed_parts(envelope)?;
        let key = self.public_key(cert_url).await?;
        let ok = match version {
            "1" => key.sha1.verify(data.as_bytes(), &signature).is_ok(),
            "2" => key.sha256.verify(data.as_bytes(), &signature).is_ok(),
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

    /// What [`Self::verify`] reads from the envelope before it fetches the certificate.
    pub fn signed_parts<'a>(
        &self,
        envelope: &'a Map<String, Value>,
    ) -> Result<SignedParts<'a>, ProviderError> {
        let data = string_to_sign(envelope)?;
        let field = |k: &str| {
            envelope
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| unauthenticated(format!("SNS message without {k}")))
        };
        let version = field("SignatureVersion")?;
        if self.require_v2 && version != "2" {
            return Err(unauthenticated(format!(
                "SNS SignatureVersion {version:?} refused: this topic must sign with version 2 (SHA256)"
            )));
        }
        let signature = B64
            .decode(field("Signature")?)
            .map_err(|_| unauthenticated("SNS Signature is not base64"))?;
        let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
            .map_err(|_| unauthenticated("SNS Signature is malformed"))?;
        Ok(SignedParts {
            data,
            version,
            signature,
            cert_url: field("SigningCertURL")?,
        })
    }
}

/// The signed string, signature version, signature and certificate URL of an envelope.
#[derive(Debug)]
pub struct SignedParts<'a> {
    pub data: String,
    pub version: &'a str,
    pub signature: rsa::pkcs1v15::Signature,
    pub cert_url: &'a str,
}

/// A shared download failure, for each message that waited on it.
fn clone_error(error: &ProviderError) -> ProviderError {
    match error {
        ProviderError::Unauthenticated(message) => ProviderError::Unauthenticated(message.clone()),
        other if other.is_retryable() => ProviderError::retryable(other.to_string()),
        other => unauthenticated(other.to_string()),
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
        let v = SnsVerifier::new(vec!["sns.us-east-1.amazonaws.com".into()], false, false).unwrap();
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

    /// A certificate URL that streams more than we read is refused without reading it all,
    /// whether or not it announces its length.
    #[tokio::test]
    async fn oversized_certificates_are_cut_off() {
        let app = axum::Router::new()
            .route(
                "/announced.pem",
                axum::routing::get(|| async { vec![b'A'; 2 * MAX_CERT_BYTES] }),
            )
            .route(
                "/streamed.pem",
                axum::routing::get(|| async {
                    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'A'; 4096]));
                    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let v = SnsVerifier::new(vec![host.clone()], true, false).unwrap();
        for path in ["announced", "streamed"] {
            let url = format!("http://{host}/{path}.pem");
            match v.public_key(&url).await {
                Err(ProviderError::Unauthenticated(m)) => assert!(m.contains("too large"), "{m}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}
