//! The buyer sign-in the landing page requires (Microsoft: Entra ID single sign-on), exposed
//! to the web front end through the core `BuyerSignIn` trait.

use std::sync::Arc;

use async_trait::async_trait;
use marketlink_core::{BuyerIdentity, BuyerSignIn, Clock, ProviderError, SignInMismatch};
use serde::{Deserialize, Serialize};

use crate::oidc::{OidcClient, OidcError};

/// `[azure.sign_in]`: how buyers sign in on the landing page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// Where the identity provider sends the buyer back, registered as a redirect URI of the
    /// app. Default: `<server.public_url>/azure/signin/callback`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Multi-tenant authority; default `{authority_host}/common/v2.0`, which admits work,
    /// school and personal Microsoft accounts, as Microsoft asks of landing pages.
    #[serde(default)]
    pub authority: Option<String>,
    /// Microsoft Graph base for the buyer's contact email.
    #[serde(default = "default_graph")]
    pub graph_base: String,
    /// Restrict sign-in to these buyer tenants (None: any work or school account).
    #[serde(default)]
    pub allowed_tenants: Option<Vec<String>>,
    /// A buyer who signs in as neither the purchaser nor the beneficiary: `refuse` (default)
    /// or `operator_approval` (an onboarding request the vendor's team decides on).
    #[serde(default)]
    pub on_mismatch: SignInMismatch,
}

fn default_graph() -> String {
    "https://graph.microsoft.com/v1.0".into()
}

/// Entra ID sign-in: authorization code with PKCE, validated ID token, Graph `/me` for mail.
pub struct EntraSignIn {
    oidc: OidcClient,
    graph_base: String,
    on_mismatch: SignInMismatch,
}

impl EntraSignIn {
    /// Discovers the authority's endpoints and keys (a network call, made once at start-up).
    pub async fn discover(
        provider: &crate::AzureProvider,
        config: &SignInConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ProviderError> {
        let azure = provider.config();
        let authority = config.authority.clone().unwrap_or_else(|| {
            format!("{}/common/v2.0", azure.authority_host.trim_end_matches('/'))
        });
        let redirect_uri = config.redirect_uri.as_deref().ok_or_else(|| {
            ProviderError::Configuration("[azure.sign_in] redirect_uri is not set".into())
        })?;
        let mut oidc = OidcClient::discover(
            &authority,
            azure.client_id.clone(),
            azure.client_secret.expose().to_owned(),
            redirect_uri,
            provider.http_client(),
            clock,
        )
        .await
        .map_err(to_provider_error)?;
        if let Some(tenants) = &config.allowed_tenants {
            oidc = oidc.with_allowed_tenants(tenants.clone());
        }
        Ok(Self {
            oidc,
            graph_base: config.graph_base.clone(),
            on_mismatch: config.on_mismatch,
        })
    }
}

fn to_provider_error(error: OidcError) -> ProviderError {
    match error {
        OidcError::Unavailable(message) => ProviderError::retryable(message),
        OidcError::Configuration(message) => ProviderError::Configuration(message),
        other => ProviderError::Unauthenticated(other.to_string()),
    }
}

#[async_trait]
impl BuyerSignIn for EntraSignIn {
    fn authorize_url(&self, state: &str, nonce: &str, pkce_challenge: &str) -> String {
        self.oidc
            .authorize_url(state, nonce, pkce_challenge)
            .to_string()
    }

    fn on_mismatch(&self) -> SignInMismatch {
        self.on_mismatch
    }

    async fn complete(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<BuyerIdentity, ProviderError> {
        let tokens = self
            .oidc
            .exchange_code(code, pkce_verifier, nonce)
            .await
            .map_err(to_provider_error)?;
        let claims = &tokens.id_token_claims;
        // Seed 002: Graph `mail`, else `userPrincipalName`; none: the page asks for an email.
        let graph = self
            .oidc
            .graph_me(&tokens.access_token, &self.graph_base)
            .await;
        let (email, name) = match &graph {
            Ok(user) => (
                user.contact_email().map(str::to_owned),
                user.display_name.clone(),
            ),
            Err(error) => {
                tracing::warn!(%error, "Graph /me failed; using the ID token's claims");
                (claims.email.clone(), None)
            }
        };
        Ok(BuyerIdentity {
            subject: claims.oid.clone().unwrap_or_else(|| claims.sub.clone()),
            tenant_id: Some(claims.tid.clone()),
            email,
            name: name.or_else(|| claims.name.clone()),
        })
    }
}
