//! The publisher app's credentials besides its secret, as registered in Entra: certificates
//! (public part), federated credentials (workload identity), and the managed identity endpoint
//! of the host marketlink runs on. `entra::assertion` and `entra::managed_identity` check them.

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::Secret;
use rsa::{
    RsaPrivateKey, RsaPublicKey,
    pkcs8::{DecodePublicKey, EncodePrivateKey, LineEnding},
    traits::PublicKeyParts,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_cert::{
    Certificate,
    der::{DecodePem, Encode},
};

/// The audience Entra requires of a federated token (workload identity federation docs).
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Stands for the sandbox's `base_url` in a federated credential's `issuer`.
pub const BASE_URL_PLACEHOLDER: &str = "{base_url}";

/// A federated identity credential of the app: tokens of `issuer` for `subject` with one of
/// `audiences` may stand in for its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedCredential {
    /// `{base_url}` is replaced by the sandbox's base URL (the sandbox is then the issuer).
    pub issuer: String,
    pub subject: String,
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
}

fn default_audiences() -> Vec<String> {
    vec![TOKEN_EXCHANGE_AUDIENCE.into()]
}

/// The issuer the sandbox plays for workload identity ("the cluster's" OIDC issuer).
pub fn workload_issuer(base_url: &str) -> String {
    format!("{base_url}/workload-identity")
}

/// `[app_credentials]` of the sandbox scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppCredentials {
    /// PEM certificates registered on the publisher app (Certificates & secrets > Certificates).
    pub certificates: Vec<String>,
    /// Federated credentials of the publisher app. Default: the sandbox's own workload issuer,
    /// subject `system:serviceaccount:marketlink:marketlink` (AKS service account form).
    pub federated: Vec<FederatedCredential>,
    /// The App Service managed identity endpoint (`/msi/token`) issues tokens of the publisher
    /// app to callers presenting this `X-IDENTITY-HEADER`; none: no such endpoint.
    pub identity_header: Option<Secret>,
}

impl Default for AppCredentials {
    fn default() -> Self {
        Self {
            certificates: Vec::new(),
            federated: vec![FederatedCredential {
                issuer: workload_issuer(BASE_URL_PLACEHOLDER),
                subject: "system:serviceaccount:marketlink:marketlink".into(),
                audiences: default_audiences(),
            }],
            identity_header: Some(Secret::new("sandbox-identity-header")),
        }
    }
}

/// A certificate credential for tests and demos: a self-signed RSA-2048 certificate and its
/// key, both PEM (register `cert_pem` on the app, give marketlink both).
#[derive(Clone)]
pub struct AppCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl AppCertificate {
    /// Generates one (RSA key generation: call off the async runtime in tight loops).
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let mut rng = rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, 2048).context("generating the RSA key")?;
        Ok(Self {
            cert_pem: crate::certificate::self_signed_pem(&key, &format!("CN={common_name}"), 365)?,
            key_pem: key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("pem: {e}"))?
                .to_string(),
        })
    }
}

/// A registered certificate, ready to check assertions with.
pub struct RegisteredCertificate {
    /// base64url SHA-256 of the DER (`x5t#S256`).
    pub x5t_s256: String,
    /// base64url SHA-1 of the DER (`x5t`).
    pub x5t: String,
    /// RSA modulus and exponent, base64url (for `jsonwebtoken::DecodingKey`).
    pub n: String,
    pub e: String,
}

impl RegisteredCertificate {
    pub fn parse(pem: &str) -> anyhow::Result<Self> {
        let cert = Certificate::from_pem(pem.as_bytes()).context("parsing a PEM certificate")?;
        let der = cert.to_der().context("encoding the certificate")?;
        let spki_der = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .context("encoding the public key")?;
        let public = RsaPublicKey::from_public_key_der(&spki_der)
            .context("the certificate's key is not RSA")?;
        Ok(Self {
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
            x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)),
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_parses_with_its_thumbprints() {
        let cert = AppCertificate::generate("marketlink test").unwrap();
        assert!(cert.key_pem.contains("BEGIN PRIVATE KEY"));
        let registered = RegisteredCertificate::parse(&cert.cert_pem).unwrap();
        assert_eq!(registered.x5t_s256.len(), 43);
        assert_eq!(registered.x5t.len(), 27);
        assert!(RegisteredCertificate::parse("not a certificate").is_err());
    }
}
