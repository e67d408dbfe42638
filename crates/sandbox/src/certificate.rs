//! Self-signed X.509 certificates for the sandboxes' own identities: the SNS signing
//! certificate (AWS) and test app certificates (Entra). Neither marketplace is reached, so a
//! self-signed root is all either needs; what matters is the key inside.

use rsa::{RsaPrivateKey, pkcs1v15::SigningKey, pkcs8::LineEnding};
use sha2::Sha256;
use x509_cert::{
    builder::{Builder, CertificateBuilder, Profile},
    der::EncodePem,
    name::Name,
    serial_number::SerialNumber,
    spki::SubjectPublicKeyInfoOwned,
    time::Validity,
};

/// A PEM certificate for `key`, named `subject` (an RFC 4514 string such as `CN=example`),
/// valid from now for `days`, signed SHA256withRSA by `key` itself.
pub(crate) fn self_signed_pem(
    key: &RsaPrivateKey,
    subject: &str,
    days: u64,
) -> anyhow::Result<String> {
    let signer = SigningKey::<Sha256>::new(key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key())?;
    let subject: Name = subject
        .parse()
        .map_err(|e| anyhow::anyhow!("subject: {e}"))?;
    let validity = Validity::from_now(std::time::Duration::from_secs(days * 86_400))?;
    let builder = CertificateBuilder::new(
        Profile::Root,
        SerialNumber::from(1u32),
        validity,
        subject,
        spki,
        &signer,
    )?;
    let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
    cert.to_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("pem: {e}"))
}
