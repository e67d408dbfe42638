//! The tokens the sandbox's Entra mints: the marketplace access token (client credentials) and
//! a signed-in user's ID token and delegated Graph token.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::azure::{
    Shared,
    config::{ClientApp, GRAPH_RESOURCE_ID, TestUser},
    keys::{derived_guid, random_token},
    state::AuthCode,
};

/// The marketplace access token (v1 shape, what the real marketplace API receives).
pub(super) fn marketplace_token(
    shared: &Shared,
    app: &ClientApp,
) -> anyhow::Result<(String, i64, i64)> {
    let now = shared.now().unix_timestamp();
    let exp = now + shared.config.access_token_ttl_secs;
    let tid = app.tenant_id.as_str();
    let oid = derived_guid(&["sp", tid, &app.client_id]);
    let iss = format!("https://sts.windows.net/{tid}/");
    let claims = json!({
        "aud": shared.config.marketplace_resource_id,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "aio": random_token(24),
        "appid": app.client_id,
        "appidacr": "1",
        "idp": iss,
        "idtyp": "app",
        "oid": oid,
        "rh": random_token(16),
        "sub": oid,
        "tid": tid,
        "uti": random_token(16),
        "ver": "1.0",
    });
    Ok((shared.key.sign(&claims)?, now, exp))
}

/// ID token and delegated Graph token for a signed-in user.
pub(super) fn user_tokens(
    shared: &Shared,
    app: &ClientApp,
    user: &TestUser,
    grant: &AuthCode,
) -> anyhow::Result<Value> {
    let now = shared.now().unix_timestamp();
    let exp = now + shared.config.access_token_ttl_secs;
    let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
    let pairwise_sub = URL_SAFE_NO_PAD.encode(Sha256::digest(format!(
        "{}|{}",
        app.client_id, user.object_id
    )));
    let times = TokenTimes { now, exp };
    let graph = graph_token_claims(app, user, times, &pairwise_sub);
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "openid profile email User.Read",
        "expires_in": exp - now,
        "ext_expires_in": exp - now,
        "access_token": shared.key.sign(&graph)?,
    });
    if scopes.contains(&"openid") {
        let id = id_token_claims(shared, app, user, grant, &scopes, times, &pairwise_sub);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("id_token".into(), json!(shared.key.sign(&id)?));
        }
    }
    Ok(body)
}

/// Issue time and expiry of one token response (unix seconds).
#[derive(Clone, Copy)]
struct TokenTimes {
    now: i64,
    exp: i64,
}

/// The delegated Graph access token (v1 shape, `scp`, the user's `oid` and `upn`).
fn graph_token_claims(
    app: &ClientApp,
    user: &TestUser,
    TokenTimes { now, exp }: TokenTimes,
    pairwise_sub: &str,
) -> Value {
    let tid = user.tenant_id.as_str();
    let mut graph = json!({
        "aud": GRAPH_RESOURCE_ID,
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "acct": 0,
        "aio": random_token(24),
        "amr": ["pwd"],
        "app_displayname": app.display_name,
        "appid": app.client_id,
        "appidacr": "1",
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.object_id,
        "scp": "openid profile email User.Read",
        "sub": pairwise_sub,
        "tid": tid,
        "uti": random_token(16),
        "ver": "1.0",
    });
    if let (Some(upn), Some(obj)) = (&user.user_principal_name, graph.as_object_mut()) {
        obj.insert("upn".into(), json!(upn));
        obj.insert("unique_name".into(), json!(upn));
    }
    graph
}

/// The v2 ID token: `nonce` when the request had one, `email` only when asked and known.
fn id_token_claims(
    shared: &Shared,
    app: &ClientApp,
    user: &TestUser,
    grant: &AuthCode,
    scopes: &[&str],
    TokenTimes { now, exp }: TokenTimes,
    pairwise_sub: &str,
) -> Value {
    let tid = user.tenant_id.as_str();
    let mut id = json!({
        "aud": app.client_id,
        "iss": shared.issuer_v2(tid),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "aio": random_token(24),
        "name": user.display_name,
        "oid": user.object_id,
        "rh": random_token(16),
        "sub": pairwise_sub,
        "tid": tid,
        "uti": random_token(16),
        "ver": "2.0",
    });
    if let Some(obj) = id.as_object_mut() {
        if let Some(nonce) = &grant.nonce {
            obj.insert("nonce".into(), json!(nonce));
        }
        if let Some(username) = user.user_principal_name.as_ref().or(user.mail.as_ref()) {
            obj.insert("preferred_username".into(), json!(username));
        }
        if scopes.contains(&"email")
            && let Some(mail) = &user.mail
        {
            obj.insert("email".into(), json!(mail));
        }
    }
    id
}
