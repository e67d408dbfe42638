//! Keys the test plays Google with: one RSA key behind a self-signed certificate per signer
//! (cloud-commerce-partner, Google OIDC, the service account), and token minting.

use std::sync::OnceLock;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::{
    RsaPrivateKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
    traits::PublicKeyParts,
};
use serde_json::{Value, json};

pub struct Signer {
    pub kid: String,
    pub private_pem: String,
    pub cert_pem: String,
}

fn make(kid: &str) -> Signer {
    let mut rng = rand::thread_rng();
    let key = RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let private_pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string();
    let pair =
        rcgen::KeyPair::from_pem_and_sign_algo(&private_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["test.example".into()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    Signer {
        kid: kid.into(),
        private_pem,
        cert_pem: cert.pem(),
    }
}

/// Google's sign-up key, another key Google never published, the OIDC key, the service account.
pub fn signers() -> &'static [Signer; 4] {
    static KEYS: OnceLock<[Signer; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            make("commerce-1"),
            make("forger"),
            make("oidc-1"),
            make("sa-key"),
        ]
    })
}

pub fn commerce() -> &'static Signer {
    &signers()[0]
}

pub fn forger() -> &'static Signer {
    &signers()[1]
}

pub fn oidc() -> &'static Signer {
    &signers()[2]
}

pub fn service_account() -> &'static Signer {
    &signers()[3]
}

/// An RS256 JWT of `claims`, signed by `signer` under `kid`.
pub fn sign(signer: &Signer, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(signer.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The `{kid: PEM}` map Google serves for `signer`.
pub fn key_map(signer: &Signer) -> Value {
    json!({ signer.kid.clone(): signer.cert_pem })
}

/// The JWK set form (`oauth2/v3/certs`) of `signer`'s public key.
pub fn jwks(signer: &Signer) -> Value {
    let key = RsaPrivateKey::from_pkcs8_pem(&signer.private_pem).unwrap();
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": signer.kid, "n": n, "e": e}]})
}
