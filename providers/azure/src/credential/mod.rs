//! Which `azure_identity` credential obtains the marketplace API token (ADR 0016), chosen by
//! `[azure.credential]`:
//!
//! ```toml
//! [azure.credential]
//! kind = "client_secret"        # the default when the table is absent: [azure] client_secret
//! # kind = "client_certificate"; certificate = "/etc/marketlink/api-app.pem" (cert + RSA key);
//! #                              private_key = "/etc/marketlink/api-app.key" (when separate)
//! # kind = "workload_identity";  token_file = "/var/run/secrets/azure/tokens/azure-identity-token"
//! #                              (default: $AZURE_FEDERATED_TOKEN_FILE, as AKS injects it)
//! # kind = "managed_identity";   client_id = "<user-assigned identity>" (optional);
//! #                              endpoint = "http://127.0.0.1:41741/msi/token" +
//! #                              identity_header = "..." (optional; default: the environment)
//! ```
//!
//! Every credential gets the same transport (`transport`: our reqwest client, so `extra_ca_pem`
//! is trusted), the configured authority host (`CloudConfiguration::Custom`) and no retries of
//! its own (our callers retry). A fresh credential is built for every token fetch: the crate's
//! own cache reads the wall clock and cannot forget a token the API refused, so ours
//! (`token.rs`, driven by our `Clock`) decides when to fetch and theirs is always empty.

mod app_service;
mod certificate;
mod transport;

use std::sync::Arc;

use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::TokenCredential,
    http::{ClientOptions, RetryOptions, Transport},
};
use azure_identity::{
    ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use marketlink_core::{Clock, ProviderError, Secret};

use crate::{
    config::AzureConfig,
    credential_config::{CredentialConfig, FEDERATED_TOKEN_FILE_ENV},
};

/// What `[azure]` says about the credential, in words for `marketlink doctor` and errors: the
/// kind, the client id and where the secret comes from, never the secret itself.
pub(crate) fn describe(config: &AzureConfig) -> String {
    let app = &config.client_id;
    match config.credential() {
        CredentialConfig::ClientSecret => {
            format!("client_secret of app {app} (from azure.client_secret)")
        }
        CredentialConfig::ClientCertificate {
            certificate,
            private_key,
        } => {
            let key = private_key.as_ref().unwrap_or(&certificate);
            format!(
                "client_certificate of app {app} (certificate {}, key {})",
                certificate.display(),
                key.display()
            )
        }
        CredentialConfig::WorkloadIdentity { token_file } => match token_file {
            Some(file) => format!(
                "workload_identity of app {app} (federated token file {})",
                file.display()
            ),
            None => format!(
                "workload_identity of app {app} (federated token file from ${FEDERATED_TOKEN_FILE_ENV})"
            ),
        },
        CredentialConfig::ManagedIdentity {
            client_id,
            endpoint,
            ..
        } => {
            let identity = match client_id {
                Some(id) => format!("user-assigned identity {id}"),
                None => "the system-assigned identity".to_owned(),
            };
            match endpoint {
                Some(endpoint) => format!("managed_identity: {identity} (endpoint {endpoint})"),
                None => format!(
                    "managed_identity: {identity} (endpoint from IDENTITY_ENDPOINT, or the instance metadata service)"
                ),
            }
        }
    }
}

/// Builds azure_identity credentials for `[azure]`: one per fetch (see the module docs).
pub(crate) struct CredentialFactory {
    config: Arc<AzureConfig>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl CredentialFactory {
    pub fn new(config: Arc<AzureConfig>, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            http,
            clock,
        }
    }

    /// Our transport, the configured authority, no retries inside the credential.
    fn client_options(&self) -> ClientOptions {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = self.config.authority().to_owned();
        let cloud = CloudConfiguration::from(custom);
        ClientOptions {
            transport: Some(Transport::new(Arc::new(transport::ReqwestTransport(
                self.http.clone(),
            )))),
            retry: RetryOptions::none(),
            cloud: Some(Arc::new(cloud)),
            ..Default::default()
        }
    }

    /// A new credential with an empty cache. Reads the certificate now, so a changed file is
    /// picked up at the next fetch.
    pub fn build(&self) -> Result<Arc<dyn TokenCredential>, ProviderError> {
        let config = &self.config;
        let refused = |e: azure_core::Error| self.configuration_error(&e.to_string());
        let tenant = config.tenant_id.clone();
        let client = config.client_id.clone();
        Ok(match config.credential() {
            CredentialConfig::ClientSecret => ClientSecretCredential::new(
                &tenant,
                client,
                config.client_secret.expose().to_owned().into(),
                Some(ClientSecretCredentialOptions {
                    client_options: self.client_options(),
                }),
            )
            .map_err(refused)?,
            CredentialConfig::ClientCertificate {
                certificate,
                private_key,
            } => {
                let assertion = certificate::CertificateAssertion::load(
                    certificate.as_path(),
                    private_key.as_deref(),
                    client.clone(),
                    config.token_url(),
                    self.clock.clone(),
                )
                .map_err(|e| self.configuration_error(&e))?;
                ClientAssertionCredential::new(
                    tenant,
                    client,
                    assertion,
                    Some(ClientAssertionCredentialOptions {
                        client_options: self.client_options(),
                    }),
                )
                .map_err(refused)?
            }
            CredentialConfig::WorkloadIdentity { token_file } => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: self.client_options(),
                    },
                    client_id: Some(client),
                    tenant_id: Some(tenant),
                    token_file_path: token_file.clone(),
                }))
                .map_err(refused)?
            }
            CredentialConfig::ManagedIdentity {
                client_id,
                endpoint: Some(endpoint),
                identity_header,
            } => Arc::new(app_service::AppServiceIdentity {
                http: self.http.clone(),
                endpoint: endpoint.clone(),
                identity_header: identity_header.clone().unwrap_or_else(|| Secret::new("")),
                client_id: client_id.clone(),
            }),
            CredentialConfig::ManagedIdentity {
                client_id,
                endpoint: None,
                ..
            } => ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: self.client_options(),
            }))
            .map_err(refused)?,
        })
    }

    /// A credential that cannot work as configured: the message names the kind.
    pub fn configuration_error(&self, detail: &str) -> ProviderError {
        ProviderError::Configuration(format!(
            "Entra token with the {}: {detail}",
            describe(&self.config)
        ))
    }

    /// Maps a failed `get_token`: Entra's 5xx and 429, and transport failures, are passing;
    /// every other refusal (4xx: a wrong secret, unknown certificate, expired assertion, no
    /// matching federated credential) is the configuration's.
    pub fn fetch_error(&self, error: &azure_core::Error) -> ProviderError {
        use azure_core::error::ErrorKind;
        let mut retryable = false;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(e) = e.downcast_ref::<azure_core::Error>() {
                match e.kind() {
                    ErrorKind::HttpResponse { status, .. } => {
                        let code = u16::from(*status);
                        retryable = code >= 500 || code == 429 || code == 408;
                        break;
                    }
                    ErrorKind::Io | ErrorKind::Connection => {
                        retryable = true;
                        break;
                    }
                    _ => {}
                }
            }
            cause = e.source();
        }
        let message = chain(error);
        if retryable {
            ProviderError::retryable(format!(
                "Entra token with the {}: {message}",
                describe(&self.config)
            ))
        } else {
            self.configuration_error(&message)
        }
    }
}

/// An error and its causes on one line (azure_identity's message names the credential and the
/// AADSTS code; the causes say what the transport saw).
fn chain(error: &azure_core::Error) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message.replace('\n', " ")
}
