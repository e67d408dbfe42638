//! The authorize endpoint: checks the request, shows the sign-in page (pick a test user) and
//! issues the authorization code (query or form_post), or sends the error back. Who may sign in
//! (the app's sign-in audience) is `audience`'s; those refusals are Entra error pages.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use time::Duration;

use super::{audience, find_app, form, tenant_known};
use crate::azure::{
    Shared,
    config::{ClientApp, TestUser},
    http::{AppState, esc, html},
    keys::random_token,
    state::AuthCode,
};

/// Authorization codes live this long.
const CODE_TTL_SECS: i64 = 600;

/// A checked authorization request.
struct AuthRequest {
    app: ClientApp,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    response_mode: String,
    code_challenge: Option<String>,
}

enum AuthError {
    /// Shown to the user: no safe redirect_uri to return to.
    Page(String),
    /// Sent back to the client's redirect_uri.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

fn check_auth_request(
    shared: &Shared,
    tenant: &str,
    p: &HashMap<String, String>,
) -> Result<AuthRequest, AuthError> {
    let (app, redirect_uri) = check_client(shared, tenant, p).map_err(AuthError::Page)?;
    audience::check_app(&app, tenant).map_err(AuthError::Page)?;
    let state = p.get("state").cloned();
    let (scope, code_challenge, response_mode) =
        check_response_params(p).map_err(|(error, description)| AuthError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description: description.into(),
        })?;
    Ok(AuthRequest {
        app,
        redirect_uri,
        scope,
        state,
        nonce: p.get("nonce").cloned(),
        response_mode,
        code_challenge,
    })
}

/// Tenant, client and redirect URI: until they check out there is nowhere safe to send an error
/// but the page itself. Returns the app and the redirect URI.
fn check_client(
    shared: &Shared,
    tenant: &str,
    p: &HashMap<String, String>,
) -> Result<(ClientApp, String), String> {
    if !tenant_known(shared, tenant) {
        return Err(format!("AADSTS90002: Tenant '{tenant}' not found."));
    }
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    let Some(app) = find_app(shared, &client_id) else {
        return Err(format!(
            "AADSTS700016: Application with identifier '{client_id}' was not found."
        ));
    };
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    let valid_redirect = url::Url::parse(&redirect_uri)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.fragment().is_none());
    if !valid_redirect {
        return Err(format!(
            "AADSTS50011: The redirect URI '{redirect_uri}' is not valid."
        ));
    }
    Ok((app, redirect_uri))
}

/// What the client asks for (response type, scope, PKCE, response mode); an error here goes
/// back to the redirect URI as `(error, error_description)`. Returns the scope, the code
/// challenge and the response mode.
fn check_response_params(
    p: &HashMap<String, String>,
) -> Result<(String, Option<String>, String), (&'static str, &'static str)> {
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err((
            "unsupported_response_type",
            "AADSTS700054: only response_type=code is supported by the sandbox.",
        ));
    }
    let scope = p.get("scope").cloned().unwrap_or_default();
    if scope.trim().is_empty() {
        return Err((
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'scope'.",
        ));
    }
    let code_challenge = p.get("code_challenge").cloned();
    match (
        code_challenge.is_some(),
        p.get("code_challenge_method").map(String::as_str),
    ) {
        (true, Some("S256")) | (false, None) => {}
        (true, _) => {
            return Err((
                "invalid_request",
                "AADSTS501491: code_challenge_method must be S256.",
            ));
        }
        (false, Some(_)) => {
            return Err((
                "invalid_request",
                "AADSTS501491: code_challenge_method without code_challenge.",
            ));
        }
    }
    let response_mode = p
        .get("response_mode")
        .cloned()
        .unwrap_or_else(|| "query".into());
    if !matches!(response_mode.as_str(), "query" | "form_post") {
        return Err((
            "invalid_request",
            "AADSTS900144: response_mode must be query or form_post.",
        ));
    }
    Ok((scope, code_challenge, response_mode))
}

/// Entra's sign-in page takes any account; whether it may sign in here is checked after
/// (`audience::check_user`). The authority's own tenant's users come first.
fn users_for_tenant<'a>(shared: &'a Shared, tenant: &str) -> Vec<&'a TestUser> {
    let mut users: Vec<&TestUser> = shared.config.users.iter().collect();
    users.sort_by_key(|u| u.tenant_id != tenant);
    users
}

fn auth_error_response(err: AuthError) -> Response {
    match err {
        AuthError::Page(message) => html(
            StatusCode::BAD_REQUEST,
            format!(
                "<!doctype html><title>Sign in error</title><h1>Sorry, but we're having trouble signing you in.</h1><p>{}</p>",
                esc(&message)
            ),
        ),
        AuthError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut params = vec![
                ("error", error.to_string()),
                ("error_description", description),
            ];
            if let Some(state) = state {
                params.push(("state", state));
            }
            redirect_with(&redirect_uri, &params)
        }
    }
}

fn redirect_with(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// The callback parameters of a declined consent.
fn declined(state: Option<String>) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("error", "access_denied".to_owned()),
        ("error_subcode", "cancel".to_owned()),
        (
            "error_description",
            "AADSTS65004: User declined to consent to access the app.".to_owned(),
        ),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params
}

pub(super) async fn authorize_page(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = check_auth_request(&shared, &tenant, &params) {
        return auth_error_response(e);
    }
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k.as_str() != "user")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let users: String = users_for_tenant(&shared, &tenant)
        .iter()
        .map(|u| {
            let contact = u
                .mail
                .as_deref()
                .map(|m| format!("mail: {m}"))
                .or_else(|| u.user_principal_name.as_deref().map(|p| format!("UPN only: {p}")))
                .unwrap_or_else(|| "no mail, no userPrincipalName".into());
            format!(
                "<li><form method=\"post\">{hidden}<input type=\"hidden\" name=\"user\" value=\"{oid}\"><button type=\"submit\">{name}</button> <small>{contact} &middot; tenant {tid}</small></form></li>",
                oid = esc(&u.object_id),
                name = esc(&u.display_name),
                contact = esc(&contact),
                tid = esc(&u.tenant_id),
            )
        })
        .collect();
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><meta charset=\"utf-8\"><title>Sign in to your account</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}li{{margin:.6em 0}}</style>\
             <h1>Pick an account</h1><p>Microsoft Entra ID sandbox &mdash; tenant <code>{}</code></p><ul>{users}</ul>\
             <form method=\"post\">{hidden}<input type=\"hidden\" name=\"cancel\" value=\"1\"><button type=\"submit\">Cancel</button> <small>declines the permissions the app asks for</small></form>",
            esc(&tenant)
        ),
    )
}

pub(super) async fn authorize_submit(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let request = match check_auth_request(&shared, &tenant, &params) {
        Ok(r) => r,
        Err(e) => return auth_error_response(e),
    };
    if params.contains_key("cancel") {
        // A user who declines consent goes back to the app with access_denied (AADSTS65004,
        // reference-error-codes: "User declined to consent to access the app"); MSAL reads the
        // error_subcode `cancel` Entra adds.
        return redirect_with(&request.redirect_uri, &declined(request.state));
    }
    let user_id = params.get("user").cloned().unwrap_or_default();
    let Some(user) = shared.config.user(&user_id) else {
        return auth_error_response(AuthError::Page(format!(
            "AADSTS50034: The user account {user_id} does not exist in the directory."
        )));
    };
    if let Err(refusal) = audience::check_user(&request.app, &tenant, user) {
        return auth_error_response(AuthError::Page(refusal));
    }
    let code = random_token(48);
    let now = shared.now();
    shared.lock().auth_codes.insert(
        code.clone(),
        AuthCode {
            client_id: request.app.client_id,
            redirect_uri: request.redirect_uri.clone(),
            scope: request.scope,
            nonce: request.nonce,
            code_challenge: request.code_challenge,
            user_object_id: user_id,
            expires_at: now + Duration::seconds(CODE_TTL_SECS),
        },
    );
    let mut params = vec![("code", code)];
    if let Some(state) = request.state {
        params.push(("state", state));
    }
    if request.response_mode == "form_post" {
        let fields: String = params
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
            .collect();
        return html(
            StatusCode::OK,
            format!(
                "<!doctype html><title>Working...</title><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{fields}<noscript><button>Continue</button></noscript></form>",
                esc(&request.redirect_uri)
            ),
        );
    }
    redirect_with(&request.redirect_uri, &params)
}
