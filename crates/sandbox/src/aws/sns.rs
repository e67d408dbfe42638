//! SNS message signing with a sandbox X.509 certificate, envelopes, and HTTP delivery.

use std::sync::OnceLock;

use axum::body::Bytes;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rsa::{
    RsaPrivateKey,
    pkcs1v15::SigningKey,
    pkcs8::{EncodePublicKey, LineEnding},
    signature::{SignatureEncoding, Signer},
};
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::Sha256;

/// The sandbox's SNS signing identity: an RSA-2048 key and a self-signed certificate whose
/// subject imitates SNS. Generated once per process (RSA key generation is slow in debug builds).
pub struct SnsSigner {
    key: RsaPrivateKey,
    pub cert_pem: String,
    pub public_key_pem: String,
}

static SIGNER: OnceLock<Result<SnsSigner, String>> = OnceLock::new();

pub fn signer() -> anyhow::Result<&'static SnsSigner> {
    SIGNER
        .get_or_init(|| SnsSigner::generate().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot create the SNS signing certificate: {e}"))
}

impl SnsSigner {
    fn generate() -> anyhow::Result<Self> {
        let mut rng = rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, 2048)?;
        let public = key.to_public_key();
        let cert_pem = crate::certificate::self_signed_pem(
            &key,
            "CN=sns.us-east-1.amazonaws.com,O=marketlink sandbox (not Amazon)",
            3 * 365,
        )?;
        let public_key_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("pem: {e}"))?;
        Ok(Self {
            key,
            cert_pem,
            public_key_pem,
        })
    }

    /// Base64 PKCS#1 v1.5 signature: version 1 = SHA1withRSA, 2 = SHA256withRSA.
    pub fn sign(&self, signature_version: u8, data: &[u8]) -> String {
        let sig = if signature_version == 1 {
            SigningKey::<Sha1>::new(self.key.clone())
                .sign(data)
                .to_vec()
        } else {
            SigningKey::<Sha256>::new(self.key.clone())
                .sign(data)
                .to_vec()
        };
        B64.encode(sig)
    }
}

/// The canonical string SNS signs (see the SNS "Verifying the signatures" documentation).
pub fn string_to_sign(envelope: &Map<String, Value>) -> String {
    let kind = envelope.get("Type").and_then(Value::as_str).unwrap_or("");
    let keys: &[&str] = if kind == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut out = String::new();
    for key in keys {
        if let Some(v) = envelope.get(*key).and_then(Value::as_str) {
            out.push_str(key);
            out.push('\n');
            out.push_str(v);
            out.push('\n');
        }
    }
    out
}

/// POST an SNS envelope to an HTTP endpoint the way SNS does (headers + JSON body, content type
/// text/plain). Returns the HTTP status, or an error string.
pub async fn deliver(endpoint: &str, envelope: &Map<String, Value>) -> Result<u16, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = Value::Object(envelope.clone()).to_string();
    let header = |k: &str| {
        envelope
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let request = hyper::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "text/plain; charset=UTF-8")
        .header("user-agent", "Amazon Simple Notification Service Agent")
        .header("x-amz-sns-message-type", header("Type"))
        .header("x-amz-sns-message-id", header("MessageId"))
        .header("x-amz-sns-topic-arn", header("TopicArn"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    // Drain the body so the connection can be reused/closed cleanly.
    let _ = response.into_body().collect().await;
    Ok(status)
}
