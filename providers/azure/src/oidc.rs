//! Buyer sign-in on the landing page: OpenID Connect authorization code + PKCE (S256) against
//! Entra ID, ID-token validation against the discovered JWKS, and Graph `/me` for a contact
//! e-mail.
//!
//! Hand-rolled on reqwest + jsonwebtoken (no `openidconnect` crate): Entra's multi-tenant
//! discovery publishes the non-standard issuer template `https://login.microsoftonline.com/
//! {tenantid}/v2.0`, which generic OIDC clients refuse, and time must come from our [`Clock`].
//!
//! The web front end's flow:
//! 1. at start-up: `OidcClient::discover("{authority_host}/organizations/v2.0" (or `common`),
//!    client_id, client_secret, "{public_url}/azure/signin/callback", http, clock)`;
//! 2. on the landing page: `let req = SignInRequest::generate()?;` store `req` in the session
//!    (server side: the verifier and nonce are secrets), redirect to
//!    `client.authorize_url_for(&req)`;
//! 3. on the callback: check `state` equals the stored one, then
//!    `client.exchange_code(code, &req.pkce_verifier, &req.nonce)` → [`TokenSet`];
//! 4. `client.graph_me(&tokens.access_token, graph_base)` → [`GraphUser`]; the contact e-mail is
//!    [`GraphUser::contact_email`] (`mail`, else `userPrincipalName`), and when both are empty
//!    the page must ask the buyer for one (Microsoft's guidance: the only chance to get it).
//!    Match the buyer to the subscription with `tid` (and `oid`) against the purchaser or
//!    beneficiary of the resolved subscription.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::{Clock, Secret};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::{
    http::{Reply, error_detail, snippet},
    jwt::{Expectations, JwksCache, JwksSource, JwtError, claim, verify},
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
    /// PKCE verifier (secret), sent with the code.
    pub pkce_verifier: String,
    /// `BASE64URL(SHA256(verifier))`, sent on the authorize URL.
    pub pkce_challenge: String,
}

impl std::fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRequest")
            .field("state", &self.state)
            .field("nonce", &"<redacted>")
            .field("pkce_verifier", &"<redacted>")
            .finish()
    }
}

/// `n` random bytes, base64url (no padding).
fn random(n: usize) -> Result<String, OidcError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf)
        .map_err(|e| OidcError::Unavailable(format!("no randomness available: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The S256 PKCE challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl SignInRequest {
    /// Fresh random state (128 bits), nonce (128 bits) and PKCE verifier (256 bits → 43 chars).
    pub fn generate() -> Result<Self, OidcError> {
        let pkce_verifier = random(32)?;
        Ok(Self {
            state: random(16)?,
            nonce: random(16)?,
            pkce_challenge: pkce_challenge(&pkce_verifier),
            pkce_verifier,
        })
    }
}

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
    client_secret: Secret,
    redirect_uri: Url,
    authorization_endpoint: Url,
    jwks: JwksCache,
    scopes: String,
    allowed_tenants: Option<Vec<String>>,
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
        let authorization_endpoint = Url::parse(&metadata.authorization_endpoint).map_err(|e| {
            OidcError::Configuration(format!(
                "discovery authorization_endpoint `{}` is not a URL: {e}",
                metadata.authorization_endpoint
            ))
        })?;
        for (name, value) in [
            ("token_endpoint", &metadata.token_endpoint),
            ("jwks_uri", &metadata.jwks_uri),
        ] {
            Url::parse(value).map_err(|e| {
                OidcError::Configuration(format!("discovery {name} `{value}` is not a URL: {e}"))
            })?;
        }
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
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
            redirect_uri,
            authorization_endpoint,
            jwks,
            scopes: DEFAULT_SCOPES.into(),
            allowed_tenants: None,
            leeway: Duration::from_secs(120),
        })
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

    /// The authorize URL to send the browser to (`response_type=code`, `response_mode=query`,
    /// PKCE S256).
    pub fn authorize_url(&self, state: &str, nonce: &str, pkce_challenge: &str) -> Url {
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", self.redirect_uri.as_str())
            .append_pair("response_mode", "query")
            .append_pair("scope", &self.scopes)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", pkce_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// [`Self::authorize_url`] for a generated request.
    pub fn authorize_url_for(&self, request: &SignInRequest) -> Url {
        self.authorize_url(&request.state, &request.nonce, &request.pkce_challenge)
    }

    /// Redeems the authorization code and validates the ID token (signature by the discovered
    /// JWKS, `aud` = client id, issuer per tenant, `nonce`, lifetime by our clock).
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        expected_nonce: &str,
    ) -> Result<TokenSet, OidcError> {
        let what = "token request";
        let response = self
            .http
            .post(&self.metadata.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
                ("code_verifier", pkce_verifier),
                ("scope", self.scopes.as_str()),
            ])
            .send()
            .await
            .map_err(|e| OidcError::Unavailable(format!("{what}: {e}")))?;
        let reply = Reply::read(response, what)
            .await
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        if !reply.status.is_success() {
            let (error, description) = error_detail(&reply.json());
            let error = error.unwrap_or_else(|| reply.status.to_string());
            let description = description.unwrap_or_else(|| snippet(&reply.body));
            return Err(
                if reply.status.is_server_error() || reply.status.as_u16() == 429 {
                    OidcError::Unavailable(format!("{what}: {error}: {description}"))
                } else if matches!(error.as_str(), "invalid_client" | "unauthorized_client") {
                    OidcError::Configuration(format!("{what}: {error}: {description}"))
                } else {
                    OidcError::Refused { error, description }
                },
            );
        }
        #[derive(Deserialize)]
        struct Tokens {
            access_token: String,
            id_token: Option<String>,
            #[serde(default)]
            expires_in: Option<Value>,
            #[serde(default)]
            scope: Option<String>,
        }
        let tokens: Tokens = serde_json::from_slice(&reply.body)
            .map_err(|e| OidcError::Unavailable(format!("{what}: unexpected body: {e}")))?;
        let id_token = tokens.id_token.ok_or_else(|| {
            OidcError::InvalidIdToken(
                "the token response has no id_token (is `openid` in the scopes?)".into(),
            )
        })?;
        let id_token_claims = self.validate_id_token(&id_token, expected_nonce).await?;
        Ok(TokenSet {
            id_token_claims,
            access_token: Secret::new(tokens.access_token),
            id_token,
            expires_in: tokens.expires_in.and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
            scope: tokens.scope,
        })
    }

    /// Validates an ID token issued to this client; public for tokens obtained another way.
    pub async fn validate_id_token(
        &self,
        id_token: &str,
        expected_nonce: &str,
    ) -> Result<IdTokenClaims, OidcError> {
        let claims = verify(
            id_token,
            &self.jwks,
            self.clock.as_ref(),
            &Expectations {
                audiences: &[self.client_id.as_str()],
                leeway: self.leeway,
            },
        )
        .await
        .map_err(|e| match e {
            JwtError::Invalid(reason) => OidcError::InvalidIdToken(reason),
            JwtError::Unavailable(reason) => OidcError::Unavailable(reason),
        })?;
        let tid = claim(&claims, "tid")
            .ok_or_else(|| OidcError::InvalidIdToken("no tid claim".into()))?
            .to_owned();
        let issuer = claim(&claims, "iss").unwrap_or_default().to_owned();
        // Multi-tenant authorities publish `.../{tenantid}/v2.0`: the token's issuer must be
        // that template filled with the token's own tid (Microsoft.Identity.Web's rule).
        let expected_issuer = self.metadata.issuer.replace("{tenantid}", &tid);
        if issuer != expected_issuer {
            return Err(OidcError::InvalidIdToken(format!(
                "issuer `{issuer}` is not `{expected_issuer}`"
            )));
        }
        if let Some(allowed) = &self.allowed_tenants
            && !allowed.iter().any(|t| t.eq_ignore_ascii_case(&tid))
        {
            return Err(OidcError::InvalidIdToken(format!(
                "tenant {tid} may not sign in here"
            )));
        }
        match claim(&claims, "nonce") {
            Some(nonce) if nonce == expected_nonce => {}
            Some(_) => return Err(OidcError::InvalidIdToken("the nonce does not match".into())),
            None => return Err(OidcError::InvalidIdToken("the token has no nonce".into())),
        }
        let text = |name: &str| claim(&claims, name).map(str::to_owned);
        Ok(IdTokenClaims {
            oid: text("oid"),
            sub: text("sub").unwrap_or_default(),
            email: text("email"),
            preferred_username: text("preferred_username"),
            name: text("name"),
            tid,
            issuer,
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
    fn pkce_s256_and_generated_requests() {
        // Expected value computed independently (Python hashlib + urlsafe_b64encode).
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r7wW1gFWFOEjXk"),
            "bwWFMyPfdG9qreDhH2lmftFx_dFeLDalzcT1gb_j68g"
        );
        let req = SignInRequest::generate().unwrap();
        assert_eq!(req.pkce_verifier.len(), 43);
        assert_eq!(req.pkce_challenge, pkce_challenge(&req.pkce_verifier));
        assert_ne!(req.state, SignInRequest::generate().unwrap().state);
        assert!(!format!("{req:?}").contains(&req.pkce_verifier));
    }

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
