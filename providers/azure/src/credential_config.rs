//! `[azure.credential]`: which credential obtains the marketplace API token (ADR 0016). The
//! keys only; `credential` builds the azure_identity credential from them.

use std::path::PathBuf;

use marketlink_core::Secret;
use serde::{Deserialize, Serialize};

/// The environment variable AKS workload identity sets to the projected token's path.
pub const FEDERATED_TOKEN_FILE_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// How the publisher's app proves who it is to Entra (`[azure.credential]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// `[azure] client_secret`.
    ClientSecret,
    /// A certificate registered on the app: a signed client assertion (RS256, `x5t#S256`).
    ClientCertificate {
        /// PEM file with the certificate, and its RSA private key unless `private_key` is set.
        certificate: PathBuf,
        #[serde(default)]
        private_key: Option<PathBuf>,
    },
    /// A federated credential of the app: the platform's token (Kubernetes service account
    /// token on AKS) is the client assertion, read from the file at every fetch.
    WorkloadIdentity {
        /// Default: `$AZURE_FEDERATED_TOKEN_FILE`.
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// The managed identity of the App Service, Functions app or VM marketlink runs on.
    ManagedIdentity {
        /// A user-assigned identity's client id; none: the system-assigned identity.
        #[serde(default)]
        client_id: Option<String>,
        /// The App Service identity endpoint (`IDENTITY_ENDPOINT`); none: azure_identity finds
        /// it in the environment (App Service) or uses the VM's instance metadata service.
        #[serde(default)]
        endpoint: Option<String>,
        /// The `X-IDENTITY-HEADER` value for `endpoint` (`IDENTITY_HEADER`).
        #[serde(default)]
        identity_header: Option<Secret>,
    },
}

impl CredentialConfig {
    /// The `kind` as written in the configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::ClientCertificate { .. } => "client_certificate",
            Self::WorkloadIdentity { .. } => "workload_identity",
            Self::ManagedIdentity { .. } => "managed_identity",
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Self::ManagedIdentity {
            endpoint: Some(endpoint),
            identity_header,
            ..
        } = self
        {
            let url = url::Url::parse(endpoint)
                .map_err(|e| format!("credential.endpoint `{endpoint}` is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("credential.endpoint must be http(s)".into());
            }
            if identity_header
                .as_ref()
                .is_none_or(|h| h.expose().is_empty())
            {
                return Err(
                    "credential.identity_header is required with credential.endpoint".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: serde_json::Value) -> Result<CredentialConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn kinds_and_their_keys() {
        let cert = parse(json!({"kind": "client_certificate", "certificate": "/c.pem"})).unwrap();
        assert_eq!(cert.kind(), "client_certificate");
        assert!(matches!(
            cert,
            CredentialConfig::ClientCertificate {
                private_key: None,
                ..
            }
        ));
        assert!(
            parse(json!({"kind": "client_certificate"})).is_err(),
            "certificate is required"
        );
        let wi = parse(json!({"kind": "workload_identity"})).unwrap();
        assert_eq!(wi, CredentialConfig::WorkloadIdentity { token_file: None });
        assert_eq!(
            parse(json!({"kind": "client_secret"})).unwrap(),
            CredentialConfig::ClientSecret
        );

        let mi = parse(json!({"kind": "managed_identity",
            "endpoint": "http://127.0.0.1:41741/msi/token", "identity_header": "hush"}))
        .unwrap();
        mi.validate().unwrap();
        assert!(!format!("{mi:?}").contains("hush"));
        let headless = parse(json!({"kind": "managed_identity",
            "endpoint": "http://127.0.0.1:41741/msi/token"}))
        .unwrap();
        assert!(headless.validate().unwrap_err().contains("identity_header"));
        let bad = parse(json!({"kind": "managed_identity", "endpoint": "nowhere",
            "identity_header": "h"}))
        .unwrap();
        assert!(bad.validate().unwrap_err().contains("not a URL"));
        parse(json!({"kind": "managed_identity"}))
            .unwrap()
            .validate()
            .unwrap();

        assert!(parse(json!({"kind": "password"})).is_err());
        assert!(parse(json!({"kind": "workload_identity", "file": "/x"})).is_err());
        assert!(parse(json!({})).is_err(), "kind is required");
    }
}
