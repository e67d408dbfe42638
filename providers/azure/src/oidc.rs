//! Buyer sign-in on the landing page: OpenID Connect authorization code + PKCE (S256) + state
//! against Entra ID, ID-token validation against the discovered JWKS, and Graph `/me` for a
//! contact e-mail.
//!
//! The OAuth 2.0 part (authorize URL, `state`, PKCE, code redemption) is the `oauth2` crate's,
//! over our reqwest client (sandbox CA, no redirects followed). The OpenID part stays ours:
//! Entra's multi-tenant discovery publishes the non-standard issuer template
//! `https://login.microsoftonline.com/{tenantid}/v2.0`, which generic OIDC clients refuse, and
//! time must come from our [`Clock`].
//!
//! The web front end's flow:
//! 1. at start-up: `OidcClient::discover("{authority_host}/organizations/v2.0" (or `common`),
//!    client_id, client_secret, "{public_url}/azure/signin/callback", http, clock)`;
//! 2. on the landing page: `let start = client.begin();` store `start.request` in the session
//!    (server side: the verifier and nonce are secrets), redirect to `start.url`;
//! 3. on the callback: check `state` equals the stored one, then
//!    `client.exchange_code(code, &req.pkce_verifier, &req.nonce)` → [`TokenSet`];
//! 4. `client.graph_me(&tokens.access_token, graph_base)` → [`GraphUser`]; the contact e-mail is
//!    [`GraphUser::contact_email`] (`mail`, else `userPrincipalName`), and when both are empty
//!    the page must ask the buyer for one (Microsoft's guidance: the only chance to get it).
//!    Match the buyer to the subscription with `tid` (and `oid`) against the purchaser or
//!    beneficiary of the resolved subscription.

use std::{sync::Arc, time::Duration};

use marketlink_core::{Clock, Secret};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, HttpClientError, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
    basic::{
        BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
        BasicTokenIntrospectionResponse, BasicTokenType,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::{
    http::{Reply, error_detail, snippet},
    jwt::{Expectations, JwksCache, JwksSource, JwtError, Text, verify},
};

/// What went wrong during sign-in.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery, JWKS, token endpoint or Graph unreachable or answering 5xx: try again.
    #[error("sign-in service unavailable: {0}")]
    Unavailable(String),
    /// The configuration does not work (bad authority, discovery document, client credentials).
    #[error("sign-in configuration problem: {0}")]
    Configuration(String),
    /// The token endpoint refused the code (`invalid_grant`: used, expired, wrong verifier).
    #[error("the sign-in was refused ({error}): {description}")]
    Refused { error: String, description: String },
    /// The ID token failed validation (signature, audience, issuer, nonce, lifetime).
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
    /// A valid sign-in of an account this landing page does not admit (a personal Microsoft
    /// account where only work or school accounts are, a tenant not in `allowed_tenants`).
    #[error("{0}")]
    NotAdmitted(String),
    /// Graph refused the call (expired or non-delegated token).
    #[error("Microsoft Graph refused the call (HTTP {status}): {message}")]
    Graph { status: u16, message: String },
}

/// The parts of the discovery document used here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// The secrets of one sign-in attempt; keep them in the server-side session until the callback.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInRequest {
    /// Anti-CSRF value echoed on the callback.
    pub state: String,
    /// Bound into the ID token.
    pub nonce: String,
    /// PKCE verifier (secret), sent with the code; its S256 challenge went on the authorize URL.
    pub pkce_verifier: String,
}

impl std::fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRequest")
            .field("state", &"<redacted>")
            .field("nonce", &"<redacted>")
            .field("pkce_verifier", &"<redacted>")
            .finish()
    }
}

/// A sign-in to start: where to send the browser, and what to keep for the callback.
#[derive(Debug, Clone)]
pub struct SignInStart {
    pub url: Url,
    pub request: SignInRequest,
}

/// Entra's token response: the standard fields plus the ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

/// An `oauth2` client with the authorize and token endpoints set.
type EntraOAuthClient = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenField, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The validated ID token's claims of interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The user's object id: stable across apps; match it to `purchaser.objectId`.
    pub oid: Option<String>,
    /// The user's tenant (`9188040d-6c67-4c5b-b112-36a304b66dad` for personal accounts).
    pub tid: String,
    /// Pairwise subject (per app).
    pub sub: String,
    pub issuer: String,
    /// Only when the `email` scope was asked and the account has one.
    pub email: Option<String>,
    /// For display only (mutable, not necessarily an e-mail).
    pub preferred_username: Option<String>,
    pub name: Option<String>,
}

/// What a successful code exchange gives.
#[derive(Clone)]
pub struct TokenSet {
    pub id_token_claims: IdTokenClaims,
    /// Delegated token (Graph `User.Read` with the default scopes).
    pub access_token: Secret,
    /// The raw ID token (e.g. as `id_token_hint` for sign-out).
    pub id_token: String,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("id_token_claims", &self.id_token_claims)
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Graph `/me`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GraphUser {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub user_principal_name: Option<String>,
}

impl GraphUser {
    /// `mail`, else `userPrincipalName` (seed 002: Entra users may lack mail; MSA users have a
    /// UPN); `None` means: ask the buyer for a contact e-mail.
    pub fn contact_email(&self) -> Option<&str> {
        fn usable(s: &Option<String>) -> Option<&str> {
            s.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        usable(&self.mail).or_else(|| usable(&self.user_principal_name))
    }
}

/// An OIDC client for one app registration and one authority.
pub struct OidcClient {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    metadata: ProviderMetadata,
    client_id: String,
    oauth: EntraOAuthClient,
    redirect_uri: Url,
    jwks: JwksCache,
    scopes: String,
    allowed_tenants: Option<Vec<String>>,
    personal_accounts: bool,
    leeway: Duration,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.metadata.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// The `tid` of every personal Microsoft account (Entra ID token claims reference).
pub const PERSONAL_ACCOUNTS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The default scopes: sign-in, e-mail claim, and Graph `/me`.
pub const DEFAULT_SCOPES: &str = "openid profile email User.Read";

async fn get_json(http: &reqwest::Client, url: &str, what: &str) -> Result<Value, OidcError> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| OidcError::Unavailable(format!("{what} {url}: {e}")))?;
    let reply = Reply::read(response, what)
        .await
        .map_err(|e| OidcError::Unavailable(e.to_string()))?;
    if reply.status.is_server_error() || reply.status.as_u16() == 429 {
        return Err(OidcError::Unavailable(format!(
            "{what} {url}: HTTP {}",
            reply.status.as_u16()
        )));
    }
    if !reply.status.is_success() {
        return Err(OidcError::Configuration(format!(
            "{what} {url}: HTTP {}: {}",
            reply.status.as_u16(),
            snippet(&reply.body)
        )));
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| OidcError::Configuration(format!("{what} {url}: not JSON: {e}")))
}

impl OidcClient {
    /// Reads the discovery document of `authority_url` (e.g.
    /// `https://login.microsoftonline.com/organizations/v2.0`, `.../common/v2.0` or a tenant;
    /// a URL already ending in `/.well-known/openid-configuration` is used as is).
    pub async fn discover(
        authority_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: &str,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OidcError> {
        const WELL_KNOWN: &str = "/.well-known/openid-configuration";
        let authority = authority_url.trim_end_matches('/');
        let discovery_url = if authority.ends_with(WELL_KNOWN) {
            authority.to_owned()
        } else {
            format!("{authority}{WELL_KNOWN}")
        };
        let redirect_uri = Url::parse(redirect_uri).map_err(|e| {
            OidcError::Configuration(format!("redirect_uri `{redirect_uri}` is not a URL: {e}"))
        })?;
        let document = get_json(&http, &discovery_url, "OIDC discovery").await?;
        let metadata: ProviderMetadata = serde_json::from_value(document).map_err(|e| {
            OidcError::Configuration(format!(
                "{discovery_url}: incomplete discovery document: {e}"
            ))
        })?;
        let bad_url = |name: &str, value: &str, e: &dyn std::fmt::Display| {
            OidcError::Configuration(format!("discovery {name} `{value}` is not a URL: {e}"))
        };
        let auth_url = AuthUrl::new(metadata.authorization_endpoint.clone()).map_err(|e| {
            bad_url(
                "authorization_endpoint",
                &metadata.authorization_endpoint,
                &e,
            )
        })?;
        let token_url = TokenUrl::new(metadata.token_endpoint.clone())
            .map_err(|e| bad_url("token_endpoint", &metadata.token_endpoint, &e))?;
        Url::parse(&metadata.jwks_uri).map_err(|e| bad_url("jwks_uri", &metadata.jwks_uri, &e))?;
        let client_id = client_id.into();
        // client_secret_post, as Entra's discovery lists first (basic works too).
        let oauth = oauth2::Client::new(ClientId::new(client_id.clone()))
            .set_client_secret(ClientSecret::new(client_secret.into()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
        let jwks = JwksCache::new(
            http.clone(),
            JwksSource::Url(metadata.jwks_uri.clone()),
            clock.clone(),
            Duration::from_secs(60),
            Duration::from_secs(24 * 3600),
        );
        Ok(Self {
            http,
            clock,
            metadata,
            client_id,
            oauth,
            redirect_uri,
            jwks,
            scopes: DEFAULT_SCOPES.into(),
            allowed_tenants: None,
            personal_accounts: true,
            leeway: Duration::from_secs(120),
        })
    }

    /// Refuses personal Microsoft accounts (`tid` [`PERSONAL_ACCOUNTS_TENANT`]) when `false`,
    /// whatever the authority admitted.
    pub fn with_personal_accounts(mut self, allowed: bool) -> Self {
        self.personal_accounts = allowed;
        self
    }

    /// Replaces the requested scopes (space separated; keep `openid`).
    pub fn with_scopes(mut self, scopes: &str) -> Self {
        self.scopes = scopes.to_owned();
        self
    }

    /// Accepts only users of these tenants (`tid`); by default any tenant may sign in.
    pub fn with_allowed_tenants(mut self, tenants: Vec<String>) -> Self {
        self.allowed_tenants = Some(tenants);
        self
    }

    pub fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// A new sign-in: fresh `state` (128 bits), `nonce` (128 bits) and PKCE verifier (256 bits),
    /// and the authorize URL carrying them (`response_type=code`, `response_mode=query`, S256).
    pub fn begin(&self) -> SignInStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random();
        let (url, state) = self
            .oauth
            .authorize_url(CsrfToken::new_random)
            .add_scopes(
                self.scopes
                    .split_whitespace()
                    .map(|scope| Scope::new(scope.to_owned())),
            )
            .add_extra_param("response_mode", "query")
            .add_extra_param("nonce", nonce.secret())
            .set_pkce_challenge(challenge)
            .url();
        SignInStart {
            url,
            request: SignInRequest {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        }
    }

    /// Redeems the authorization code and validates the ID token (signature by the discovered
    /// JWKS, `aud` = client id, issuer per tenant, `nonce`, lifetime by our clock).
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        expected_nonce: &str,
    ) -> Result<TokenSet, OidcError> {
        let tokens = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .add_extra_param("scope", self.scopes.clone())
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = tokens.extra_fields().id_token.clone().ok_or_else(|| {
            OidcError::InvalidIdToken(
                "the token response has no id_token (is `openid` in the scopes?)".into(),
            )
        })?;
        let id_token_claims = self.validate_id_token(&id_token, expected_nonce).await?;
        Ok(TokenSet {
            id_token_claims,
            access_token: Secret::new(tokens.access_token().secret().clone()),
            id_token,
            expires_in: tokens.expires_in().map(|d| d.as_secs()),
            scope: tokens.scopes().map(|scopes| {
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        })
    }

    /// Validates an ID token issued to this client; public for tokens obtained another way.
    pub async fn validate_id_token(
        &self,
        id_token: &str,
        expected_nonce: &str,
    ) -> Result<IdTokenClaims, OidcError> {
        let mut payload = Vec::new();
        let claims = verify(
            id_token,
            &self.jwks,
            self.clock.as_ref(),
            &Expectations {
                audiences: &[self.client_id.as_str()],
                leeway: self.leeway,
            },
            &mut payload,
        )
        .await
        .map_err(|e| match e {
            JwtError::Invalid(reason) => OidcError::InvalidIdToken(reason),
            JwtError::Unavailable(reason) => OidcError::Unavailable(reason),
        })?;
        let tid = claims
            .tid
            .get()
            .ok_or_else(|| OidcError::InvalidIdToken("no tid claim".into()))?;
        let issuer = claims.iss.get().unwrap_or_default();
        // Multi-tenant authorities publish `.../{tenantid}/v2.0`: the token's issuer must be
        // that template filled with the token's own tid (Microsoft.Identity.Web's rule).
        let expected_issuer = self.metadata.issuer.replace("{tenantid}", tid);
        if issuer != expected_issuer {
            return Err(OidcError::InvalidIdToken(format!(
                "issuer `{issuer}` is not `{expected_issuer}`"
            )));
        }
        if let Some(allowed) = &self.allowed_tenants
            && !allowed.iter().any(|t| t.eq_ignore_ascii_case(tid))
        {
            return Err(OidcError::NotAdmitted(format!(
                "accounts of directory {tid} may not sign in here"
            )));
        }
        if !self.personal_accounts && tid.eq_ignore_ascii_case(PERSONAL_ACCOUNTS_TENANT) {
            return Err(OidcError::NotAdmitted(
                "personal Microsoft accounts cannot be used here; sign in with a work or school account".into(),
            ));
        }
        match claims.nonce.get() {
            Some(nonce) if nonce == expected_nonce => {}
            Some(_) => return Err(OidcError::InvalidIdToken("the nonce does not match".into())),
            None => return Err(OidcError::InvalidIdToken("the token has no nonce".into())),
        }
        let text = |claim: &Text<'_>| claim.get().map(str::to_owned);
        Ok(IdTokenClaims {
            oid: text(&claims.oid),
            sub: text(&claims.sub).unwrap_or_default(),
            email: text(&claims.email),
            preferred_username: text(&claims.preferred_username),
            name: text(&claims.name),
            tid: tid.to_owned(),
            issuer: issuer.to_owned(),
        })
    }

    /// `GET {graph_base}/me` with the delegated access token (`graph_base` is
    /// `https://graph.microsoft.com/v1.0`, or the sandbox's `graph_base()`).
    pub async fn graph_me(
        &self,
        access_token: &Secret,
        graph_base: &str,
    ) -> Result<GraphUser, OidcError> {
        graph_me(&self.http, access_token.expose(), graph_base).await
    }
}

/// What a failed code redemption means for us.
fn token_error(
    error: RequestTokenError<HttpClientError<reqwest::Error>, BasicErrorResponse>,
) -> OidcError {
    const WHAT: &str = "token request";
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().as_ref().to_owned();
            let description = response.error_description().cloned().unwrap_or_default();
            match response.error() {
                BasicErrorResponseType::InvalidClient
                | BasicErrorResponseType::UnauthorizedClient => {
                    OidcError::Configuration(format!("{WHAT}: {code}: {description}"))
                }
                BasicErrorResponseType::Extension(e)
                    if matches!(e.as_str(), "temporarily_unavailable" | "server_error") =>
                {
                    OidcError::Unavailable(format!("{WHAT}: {code}: {description}"))
                }
                _ => OidcError::Refused {
                    error: code,
                    description,
                },
            }
        }
        RequestTokenError::Parse(e, body) => OidcError::Unavailable(format!(
            "{WHAT}: unexpected answer: {e}: {}",
            snippet(&body)
        )),
        RequestTokenError::Request(e) => OidcError::Unavailable(format!("{WHAT}: {e}")),
        RequestTokenError::Other(e) => OidcError::Unavailable(format!("{WHAT}: {e}")),
    }
}

/// `GET {graph_base}/me` (see [`OidcClient::graph_me`]).
pub async fn graph_me(
    http: &reqwest::Client,
    access_token: &str,
    graph_base: &str,
) -> Result<GraphUser, OidcError> {
    let url = format!("{}/me", graph_base.trim_end_matches('/'));
    let what = "Graph /me";
    let response = http
        .get(&url)
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|e| OidcError::Unavailable(format!("{what}: {e}")))?;
    let reply = Reply::read(response, what)
        .await
        .map_err(|e| OidcError::Unavailable(e.to_string()))?;
    if reply.status.is_server_error() || reply.status.as_u16() == 429 {
        return Err(OidcError::Unavailable(format!(
            "{what}: HTTP {}",
            reply.status.as_u16()
        )));
    }
    if !reply.status.is_success() {
        let (code, message) = error_detail(&reply.json());
        return Err(OidcError::Graph {
            status: reply.status.as_u16(),
            message: format!(
                "{}: {}",
                code.unwrap_or_default(),
                message.unwrap_or_else(|| snippet(&reply.body))
            ),
        });
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| OidcError::Unavailable(format!("{what}: unexpected body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_email_prefers_mail() {
        let user = |mail: Option<&str>, upn: Option<&str>| GraphUser {
            mail: mail.map(str::to_owned),
            user_principal_name: upn.map(str::to_owned),
            ..GraphUser::default()
        };
        assert_eq!(user(Some("a@x"), Some("u@x")).contact_email(), Some("a@x"));
        assert_eq!(user(Some(" "), Some("u@x")).contact_email(), Some("u@x"));
        assert_eq!(user(None, None).contact_email(), None);
    }
}
