//! The buyer sign-in the landing page requires (Microsoft: Entra ID single sign-on), exposed
//! to the web front end through the core `BuyerSignIn` trait.
//!
//! Microsoft recommends two Entra apps (ADR 0017): the API app of `[azure]` (single-tenant,
//! client credentials for the Fulfillment and Metering APIs, the `aud` of webhook tokens) and a
//! multi-tenant landing-page app here, `[azure.sign_in] client_id` / `client_secret`. Without
//! them the API app signs buyers in too, which works only if it is registered multi-tenant.

use std::sync::Arc;

use async_trait::async_trait;
use marketlink_core::{
    BuyerIdentity, BuyerSignIn, Clock, ProviderError, Secret, SignInMismatch, SignInStart,
};
use serde::{Deserialize, Serialize};

use crate::{
    AzureConfig,
    oidc::{OidcClient, OidcError},
};

/// `[azure.sign_in]`: how buyers sign in on the landing page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// The landing-page app (multi-tenant: "Accounts in any organizational directory"); default
    /// `[azure] client_id`, one app for both.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The landing-page app's client secret; default `[azure] client_secret`. Required when
    /// `client_id` names another app.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Where the identity provider sends the buyer back, registered as a redirect URI of the
    /// app. Default: `<server.public_url>/azure/signin/callback`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Admit personal Microsoft accounts (Outlook.com, Xbox...) as well as work and school
    /// accounts; the app must then be registered "... and personal Microsoft accounts".
    /// Default false: Microsoft's landing page guidance is a multi-tenant app for organisations;
    /// personal accounts only where the vendor chooses them.
    #[serde(default)]
    pub allow_personal_accounts: bool,
    /// Authority; default `{authority_host}/organizations/v2.0` (work and school accounts of any
    /// tenant), or `{authority_host}/common/v2.0` with `allow_personal_accounts`.
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

impl SignInConfig {
    /// A configuration with every optional key at its default, sending buyers back to
    /// `redirect_uri`.
    pub fn new(redirect_uri: impl Into<String>) -> Self {
        Self {
            client_id: None,
            client_secret: None,
            redirect_uri: Some(redirect_uri.into()),
            allow_personal_accounts: false,
            authority: None,
            graph_base: default_graph(),
            allowed_tenants: None,
            on_mismatch: SignInMismatch::default(),
        }
    }

    /// The landing-page app's client id and secret: its own, else the API app's.
    pub fn app<'a>(&'a self, azure: &'a AzureConfig) -> Result<(&'a str, &'a Secret), String> {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            (Some(id), None) if *id != azure.client_id => Err(format!(
                "[azure.sign_in] client_id `{id}` is another app than [azure] client_id: set [azure.sign_in] client_secret too"
            )),
            (Some(id), None) => Ok((id, &azure.client_secret)),
            (None, Some(_)) => Err("[azure.sign_in] client_secret is set without client_id".into()),
            (None, None) => Ok((&azure.client_id, &azure.client_secret)),
        }
    }

    /// The authority buyers sign in at (see [`SignInConfig::authority`]).
    pub fn authority_url(&self, azure: &AzureConfig) -> String {
        self.authority.clone().unwrap_or_else(|| {
            let audience = if self.allow_personal_accounts {
                "common"
            } else {
                "organizations"
            };
            format!("{}/{audience}/v2.0", azure.authority())
        })
    }
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
        let authority = config.authority_url(azure);
        let redirect_uri = config.redirect_uri.as_deref().ok_or_else(|| {
            ProviderError::Configuration("[azure.sign_in] redirect_uri is not set".into())
        })?;
        let (client_id, client_secret) = config.app(azure).map_err(ProviderError::Configuration)?;
        let mut oidc = OidcClient::discover(
            &authority,
            client_id,
            client_secret.expose(),
            redirect_uri,
            provider.http_client(),
            clock,
        )
        .await
        .map_err(to_provider_error)?
        .with_personal_accounts(config.allow_personal_accounts);
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
        OidcError::NotAdmitted(message) => ProviderError::Rejected {
            code: "account_not_admitted".into(),
            message,
        },
        other => ProviderError::Unauthenticated(other.to_string()),
    }
}

#[async_trait]
impl BuyerSignIn for EntraSignIn {
    fn begin(&self) -> SignInStart {
        let start = self.oidc.begin();
        SignInStart {
            authorize_url: start.url.to_string(),
            state: start.request.state,
            nonce: start.request.nonce,
            pkce_verifier: start.request.pkce_verifier,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_one_app_organisations_only() {
        let azure = AzureConfig::new("t", "api-app", "api-secret");
        let parsed: SignInConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(!parsed.allow_personal_accounts);
        let (id, secret) = parsed.app(&azure).unwrap();
        assert_eq!((id, secret.expose()), ("api-app", "api-secret"));
        assert_eq!(
            parsed.authority_url(&azure),
            "https://login.microsoftonline.com/organizations/v2.0"
        );
        let personal = SignInConfig {
            allow_personal_accounts: true,
            ..parsed.clone()
        };
        assert_eq!(
            personal.authority_url(&azure),
            "https://login.microsoftonline.com/common/v2.0"
        );
        let explicit = SignInConfig {
            authority: Some("https://login.microsoftonline.com/t/v2.0".into()),
            ..personal
        };
        assert_eq!(
            explicit.authority_url(&azure),
            "https://login.microsoftonline.com/t/v2.0"
        );
    }

    #[test]
    fn a_landing_app_of_its_own_needs_its_own_secret() {
        let azure = AzureConfig::new("t", "api-app", "api-secret");
        let mut config = SignInConfig::new("https://x/azure/signin/callback");
        config.client_id = Some("landing-app".into());
        assert!(config.app(&azure).unwrap_err().contains("client_secret"));
        config.client_secret = Some(Secret::new("landing-secret"));
        let (id, secret) = config.app(&azure).unwrap();
        assert_eq!((id, secret.expose()), ("landing-app", "landing-secret"));
        // Naming the API app explicitly keeps its secret.
        config.client_id = Some("api-app".into());
        config.client_secret = None;
        assert_eq!(config.app(&azure).unwrap().1.expose(), "api-secret");
        config.client_id = None;
        config.client_secret = Some(Secret::new("orphan"));
        assert!(config.app(&azure).is_err());
        assert!(!format!("{config:?}").contains("orphan"));
    }
}
