//! The client assertion of a certificate credential, signed here instead of by azure_identity's
//! `ClientCertificateCredential`: that one needs OpenSSL (its `client_certificate` feature) and
//! the wall clock; this one is jsonwebtoken's RS256 (already ours, rustls-only) and our `Clock`.
//!
//! Format (Microsoft identity platform, "application authentication certificate credentials"):
//! header `alg` RS256, `typ` JWT, `x5t` (SHA-1) and `x5t#S256` (SHA-256) of the certificate's
//! DER, base64url; claims `aud` = the token endpoint, `iss` = `sub` = the client id, a unique
//! `jti`, `nbf`/`iat` now and `exp` ten minutes on.

use std::{fmt, path::Path, sync::Arc};

use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marketlink_core::Clock;
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Assertions live this long; Entra refuses expired ones (AADSTS700024).
const LIFETIME_SECS: i64 = 600;

pub(super) struct CertificateAssertion {
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
    client_id: String,
    audience: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("x5t#S256", &self.x5t_s256)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The first PEM block labelled `label`, decoded.
fn pem_block(text: &str, labels: &[&str]) -> Option<(String, Vec<u8>)> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = text.find(&begin) {
            let rest = &text[start + begin.len()..];
            let stop = rest.find(&end)?;
            let body: String = rest[..stop].split_whitespace().collect();
            let der = STANDARD.decode(body).ok()?;
            let block = format!("{begin}\n{}\n{end}\n", &rest[..stop].trim());
            return Some((block, der));
        }
    }
    None
}

impl CertificateAssertion {
    /// Reads the certificate (and key) PEM files.
    pub fn load(
        certificate: &Path,
        private_key: Option<&Path>,
        client_id: String,
        audience: String,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        let cert_text = read(certificate)?;
        let (_, der) = pem_block(&cert_text, &["CERTIFICATE"])
            .ok_or_else(|| format!("{} holds no PEM certificate", certificate.display()))?;
        let key_path = private_key.unwrap_or(certificate);
        let key_text = if private_key.is_some() {
            read(key_path)?
        } else {
            cert_text
        };
        let (key_pem, _) =
            pem_block(&key_text, &["PRIVATE KEY", "RSA PRIVATE KEY"]).ok_or_else(|| {
                format!(
                    "{} holds no RSA private key (PEM `PRIVATE KEY` or `RSA PRIVATE KEY`)",
                    key_path.display()
                )
            })?;
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
            format!(
                "the private key in {} is not an RSA key: {e}",
                key_path.display()
            )
        })?;
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(&der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
            client_id,
            audience,
            clock,
        })
    }

    fn sign(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let now = self.clock.now().unix_timestamp();
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.sign().map_err(|e| {
            azure_core::Error::with_error(
                azure_core::error::ErrorKind::Credential,
                e,
                "signing the client assertion",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_found_by_label() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nBAU=\n-----END PRIVATE KEY-----\n";
        let (_, der) = pem_block(text, &["CERTIFICATE"]).expect("certificate");
        assert_eq!(der, vec![0, 1, 2, 3]);
        let (pem, der) = pem_block(text, &["PRIVATE KEY", "RSA PRIVATE KEY"]).expect("key");
        assert_eq!(der, vec![4, 5]);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem_block(text, &["EC PRIVATE KEY"]).is_none());
    }
}
