//! RSA keys: the marketplace's sign-up JWT key (published as X.509 certificates, as Google's
//! `robot/v1/metadata/x509` endpoint does), the push OIDC issuer's key (a JWKS), and the
//! vendor's service account key (a key file as the IAM console downloads it).

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use marketlink_core::Secret;
use rsa::{
    RsaPrivateKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
    traits::PublicKeyParts,
};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

/// One RSA key that signs and checks RS256 JWTs under its `kid`.
pub(crate) struct RsaKey {
    pub kid: String,
    private: RsaPrivateKey,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n_b64: String,
    e_b64: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RsaKey {
    /// A new 2048-bit key (slow: callers cache it); `kid` defaults to 40 hex digits, the shape
    /// of Google's key ids.
    pub fn generate(kid: Option<String>) -> anyhow::Result<Self> {
        let private =
            RsaPrivateKey::new(&mut rand::thread_rng(), 2048).context("generating an RSA key")?;
        Self::from_private(private, kid)
    }

    pub fn from_pkcs8_pem(pem: &str, kid: Option<String>) -> anyhow::Result<Self> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).context("service account private key")?;
        Self::from_private(private, kid)
    }

    fn from_private(private: RsaPrivateKey, kid: Option<String>) -> anyhow::Result<Self> {
        let n = private.n().to_bytes_be();
        let kid = kid.unwrap_or_else(|| hex::encode(Sha1::digest(&n)));
        let n_b64 = URL_SAFE_NO_PAD.encode(&n);
        let e_b64 = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding an RSA key")?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).context("RSA signing key")?;
        let decoding =
            DecodingKey::from_rsa_components(&n_b64, &e_b64).context("RSA verification key")?;
        Ok(Self {
            kid,
            private,
            encoding,
            decoding,
            n_b64,
            e_b64,
        })
    }

    /// Signs `claims` as an RS256 JWT whose header names this key's `kid`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        self.sign_as(claims, &self.kid)
    }

    /// Signs under another key's `kid` (forged tokens in tests).
    pub fn sign_as(&self, claims: &Value, kid: &str) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("signing a JWT")
    }

    /// Checks the RS256 signature only and returns the claims; lifetimes and audiences are the
    /// caller's to check against the sandbox's clock. The header may leave `kid` out: Google
    /// documents the service-account assertion's header as `{"alg":"RS256","typ":"JWT"}`
    /// (developers.google.com/identity/protocols/oauth2/service-account#formingheader), so the
    /// key's one key checks it; a `kid` that is sent must name this key.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid_fits = header.kid.as_deref().is_none_or(|kid| kid == self.kid);
        if header.alg != Algorithm::RS256 || !kid_fits {
            return None;
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// This key as a JWK (Google's `oauth2/v3/certs` shape).
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n_b64, "e": self.e_b64})
    }

    /// A self-signed certificate of this key, PEM.
    pub fn certificate_pem(&self, subject: &str) -> anyhow::Result<String> {
        crate::certificate::self_signed_pem(&self.private, subject, 30)
    }

    /// The PKCS#8 PEM of the private key (as `private_key` of a Google key file).
    pub fn private_pem(&self) -> anyhow::Result<Secret> {
        let pem = self
            .private
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding an RSA key")?;
        Ok(Secret::new(pem.to_string()))
    }
}

/// The marketplace's own keys, shared by every sandbox of the process (generation is slow).
pub(crate) struct MarketplaceKeys {
    /// Signs sign-up JWTs.
    pub signup: RsaKey,
    /// `signup`'s certificate, served at the x509 metadata URL.
    pub signup_certificate: String,
    /// Signs push OIDC tokens.
    pub oidc: RsaKey,
    /// A generated vendor service account key, used when the config names none.
    pub default_account: Arc<RsaKey>,
}

static MARKETPLACE_KEYS: OnceLock<Arc<MarketplaceKeys>> = OnceLock::new();
static FORGER_KEY: OnceLock<Arc<RsaKey>> = OnceLock::new();

impl MarketplaceKeys {
    pub fn shared() -> anyhow::Result<Arc<MarketplaceKeys>> {
        if let Some(keys) = MARKETPLACE_KEYS.get() {
            return Ok(keys.clone());
        }
        let signup = RsaKey::generate(None)?;
        let signup_certificate =
            signup.certificate_pem("CN=cloud-commerce-partner.system.gserviceaccount.com")?;
        let keys = Arc::new(MarketplaceKeys {
            signup,
            signup_certificate,
            oidc: RsaKey::generate(None)?,
            default_account: Arc::new(RsaKey::generate(None)?),
        });
        Ok(MARKETPLACE_KEYS.get_or_init(|| keys).clone())
    }
}

/// A key nobody publishes, for forged tokens in tests.
pub(crate) fn forger_key() -> anyhow::Result<Arc<RsaKey>> {
    if let Some(key) = FORGER_KEY.get() {
        return Ok(key.clone());
    }
    let key = Arc::new(RsaKey::generate(None)?);
    Ok(FORGER_KEY.get_or_init(|| key).clone())
}
