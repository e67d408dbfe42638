//! Client assertions at the token endpoint (`client_assertion_type =
//! urn:ietf:params:oauth:client-assertion-type:jwt-bearer`), in place of a client secret.
//!
//! Two kinds, told apart as Entra does by who issued the assertion:
//! - **Certificate** (learn.microsoft.com, "Microsoft identity platform application
//!   authentication certificate credentials"): a JWT the app signs itself, `iss` = `sub` = the
//!   client id, `aud` = the token endpoint, `x5t#S256` (or `x5t`) naming a certificate
//!   registered on the app, whose key must verify the RS256/PS256 signature; `exp` in the
//!   future, `nbf` not ahead, a `jti` used once.
//! - **Federated** ("Workload identity federation"): a token of another issuer (here the
//!   sandbox playing the Kubernetes cluster's OIDC issuer, `{base_url}/workload-identity`),
//!   matched against the app's federated credentials by issuer, subject and audience
//!   (`api://AzureADTokenExchange`), live by `exp`. Not single-use: AKS hands the same projected
//!   token to every request until the kubelet rotates it.
//!
//! Refusals carry Entra's codes: AADSTS700027 (certificate not registered / signature),
//! AADSTS700024 (outside the valid time range), AADSTS700021 (`sub` is not the client id),
//! AADSTS700211/700212/700213 (no federated credential for the issuer / audience / subject),
//! AADSTS50027 (malformed JWT; also used here, our choice, for a wrong `aud` and a replayed
//! `jti`, whose public AADSTS numbers we could not confirm).

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::azure::{
    Shared,
    config::ClientApp,
    credentials::{BASE_URL_PLACEHOLDER, RegisteredCertificate},
};

pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew Entra tolerates on `nbf` (five minutes).
const SKEW_SECS: i64 = 300;

/// Why an assertion is refused: an Entra error (`invalid_client`, 401 unless said otherwise).
pub(super) struct Refused {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
}

fn refused(code: u32, description: impl Into<String>) -> Refused {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        code,
        description: description.into(),
    }
}

/// Checks the form's client assertion for `app` (of `tenant`).
pub(super) fn check(
    shared: &Shared,
    app: &ClientApp,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Result<(), Refused> {
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code: 900144,
            description: format!(
                "The request body must contain the following parameter: 'client_assertion_type' with the value '{JWT_BEARER}'."
            ),
        });
    }
    let assertion = form
        .get("client_assertion")
        .map(String::as_str)
        .unwrap_or("");
    let claims = unverified_claims(assertion)
        .ok_or_else(|| refused(50027, "JWT token is invalid or malformed."))?;
    let iss = text(&claims, "iss");
    if iss == app.client_id {
        check_certificate(shared, app, tenant, assertion, &claims)
    } else {
        check_federated(shared, app, assertion)
    }
}

fn text<'a>(claims: &'a Value, name: &str) -> &'a str {
    claims.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The payload, before any check (to see who issued it).
fn unverified_claims(jwt: &str) -> Option<Value> {
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// `exp` passed or `nbf` ahead, by the sandbox clock.
fn check_times(shared: &Shared, claims: &Value) -> Result<(), Refused> {
    let now = shared.now().unix_timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(now);
    if exp <= now || nbf > now + SKEW_SECS {
        return Err(refused(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}."
            ),
        ));
    }
    Ok(())
}

fn check_certificate(
    shared: &Shared,
    app: &ClientApp,
    tenant: &str,
    assertion: &str,
    claims: &Value,
) -> Result<(), Refused> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| refused(50027, "JWT token is invalid or malformed."))?;
    let thumbprint = header
        .x5t_s256
        .clone()
        .or(header.x5t.clone())
        .unwrap_or_default();
    let registered = registered_certificates(shared, app);
    let Some(cert) = registered
        .iter()
        .find(|c| thumbprint == c.x5t_s256 || thumbprint == c.x5t)
    else {
        return Err(refused(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                app.client_id
            ),
        ));
    };
    verify_signature(cert, &header, assertion)?;
    if text(claims, "sub") != app.client_id {
        return Err(refused(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let aud = text(claims, "aud");
    let base = &shared.base_url;
    let endpoints = [
        format!("{base}/{tenant}/oauth2/v2.0/token"),
        format!("{base}/{tenant}/oauth2/token"),
    ];
    if !endpoints.iter().any(|e| e == aud) {
        return Err(refused(
            50027,
            format!(
                "Invalid JWT token. The client assertion's audience '{aud}' is not the token endpoint {}.",
                endpoints[0]
            ),
        ));
    }
    check_times(shared, claims)?;
    first_use(shared, text(claims, "jti"))
}

/// The assertion's RS256/PS256 signature, by the registered certificate's key.
fn verify_signature(
    cert: &RegisteredCertificate,
    header: &jsonwebtoken::Header,
    assertion: &str,
) -> Result<(), Refused> {
    let bad = || refused(700027, "Client assertion failed signature validation.");
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(bad());
    }
    let key = DecodingKey::from_rsa_components(&cert.n, &cert.e).map_err(|_| bad())?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, &key, &validation).map_err(|_| bad())?;
    Ok(())
}

/// A certificate assertion's `jti` is single-use.
fn first_use(shared: &Shared, jti: &str) -> Result<(), Refused> {
    if jti.is_empty() {
        return Err(refused(
            50027,
            "Invalid JWT token. The client assertion has no jti.",
        ));
    }
    let fresh = shared
        .used_assertions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(jti.to_owned());
    if !fresh {
        return Err(refused(
            50027,
            format!("Invalid JWT token. The client assertion with jti '{jti}' was already used."),
        ));
    }
    Ok(())
}

/// The certificates registered on `app` (the publisher's app only; others have none).
fn registered_certificates(shared: &Shared, app: &ClientApp) -> Vec<RegisteredCertificate> {
    if app.client_id != shared.config.publisher_app_id {
        return Vec::new();
    }
    shared
        .config
        .app_credentials
        .certificates
        .iter()
        .filter_map(|pem| match RegisteredCertificate::parse(pem) {
            Ok(cert) => Some(cert),
            Err(e) => {
                tracing::warn!(error = %e, "azure sandbox: a registered certificate does not parse");
                None
            }
        })
        .collect()
}

fn check_federated(shared: &Shared, app: &ClientApp, assertion: &str) -> Result<(), Refused> {
    // The sandbox is the only issuer it can verify: its key signs the "cluster's" tokens.
    let claims = shared
        .key
        .verify(assertion)
        .ok_or_else(|| refused(50027, "Invalid JWT token. The token's signature could not be verified against the issuer's keys."))?;
    let (iss, sub) = (text(&claims, "iss"), text(&claims, "sub"));
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let federated: Vec<_> = if app.client_id == shared.config.publisher_app_id {
        shared.config.app_credentials.federated.clone()
    } else {
        Vec::new()
    };
    let by_issuer: Vec<_> = federated
        .iter()
        .filter(|f| f.issuer.replace(BASE_URL_PLACEHOLDER, &shared.base_url) == iss)
        .collect();
    if by_issuer.is_empty() {
        return Err(refused(
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'."
            ),
        ));
    }
    let by_subject: Vec<_> = by_issuer.iter().filter(|f| f.subject == sub).collect();
    if by_subject.is_empty() {
        return Err(refused(
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'."
            ),
        ));
    }
    if !by_subject
        .iter()
        .any(|f| f.audiences.iter().any(|a| audiences.contains(&a.as_str())))
    {
        return Err(refused(
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                audiences.join(", ")
            ),
        ));
    }
    check_times(shared, &claims)
}
