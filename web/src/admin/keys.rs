//! The vendor's API keys in the portal: list, create (the secret shown once), revoke.

use askama::Template;
use axum::{
    Form,
    extract::{Path, State},
    http::StatusCode,
    response::{Redirect, Response},
};
use marketlink_core::{Scope, TenantId};
use marketlink_store::StoreError;
use serde::Deserialize;

use super::{actor, internal, table::when};
use crate::session::CsrfForm;
use crate::{
    AppState,
    api_auth::new_key,
    extract::Operator,
    pages::{Branding, PageError, render},
};

#[derive(Template)]
#[template(path = "admin_keys.html")]
struct KeysPage {
    brand: Branding,
    csrf: String,
    created: Option<String>,
    error: Option<String>,
    /// `(prefix, name, scopes, tenant, created, revoked)`.
    keys: Vec<(String, String, String, String, String, bool)>,
}

/// What the page says besides the list.
enum Outcome {
    Listed,
    /// A key was created: its plaintext, shown this once.
    Created(String),
    /// The form was not acceptable: why.
    Refused(String),
}

async fn keys_page(
    state: &AppState,
    operator: &Operator,
    outcome: Outcome,
) -> Result<Response, PageError> {
    let keys = state.engine.api_keys(None).await.map_err(internal)?;
    let keys = keys
        .into_iter()
        .map(|k| {
            let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
            (
                k.prefix,
                k.name,
                scopes.join(", "),
                k.tenant_id
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "all".into()),
                when(k.created_at),
                k.revoked_at.is_some(),
            )
        })
        .collect();
    let (status, created, error) = match outcome {
        Outcome::Listed => (StatusCode::OK, None, None),
        Outcome::Created(plaintext) => (StatusCode::CREATED, Some(plaintext), None),
        Outcome::Refused(why) => (StatusCode::UNPROCESSABLE_ENTITY, None, Some(why)),
    };
    let page = KeysPage {
        brand: state.settings.branding.clone(),
        csrf: operator.browser.session.csrf.clone(),
        created,
        error,
        keys,
    };
    Ok(render(status, &page))
}

pub(super) async fn page(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Response, PageError> {
    keys_page(&state, &operator, Outcome::Listed).await
}

#[derive(Deserialize)]
pub(super) struct KeyForm {
    csrf: String,
    name: String,
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    tenant: String,
}

pub(super) async fn create(
    State(state): State<AppState>,
    operator: Operator,
    axum_extra::extract::Form(form): axum_extra::extract::Form<KeyForm>,
) -> Result<Response, PageError> {
    if !operator.browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let refused = |why: String| keys_page(&state, &operator, Outcome::Refused(why));
    let scopes: Result<Vec<Scope>, String> = form.scope.iter().map(|s| s.parse()).collect();
    let scopes = match scopes {
        Ok(scopes) if scopes.is_empty() => {
            return refused("Choose at least one scope.".into()).await;
        }
        Ok(scopes) => scopes,
        Err(why) => return refused(why).await,
    };
    let name = form.name.trim();
    if name.is_empty() {
        return refused("Give the key a name.".into()).await;
    }
    let no_tenant = || format!("There is no tenant `{}`.", form.tenant.trim());
    let tenant = match form.tenant.trim() {
        "" => None,
        raw => match raw.parse::<TenantId>() {
            Ok(id) => Some(id),
            Err(_) => return refused(no_tenant()).await,
        },
    };
    let (key, plaintext, hash) = new_key(name, scopes, tenant, state.now());
    match state
        .engine
        .create_api_key(&actor(&operator), &key, &hash)
        .await
    {
        Ok(()) => keys_page(&state, &operator, Outcome::Created(plaintext)).await,
        Err(StoreError::NotFound("tenant")) => refused(no_tenant()).await,
        Err(error) => Err(internal(error)),
    }
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    operator: Operator,
    Path(prefix): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    if !operator.browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    match state
        .engine
        .revoke_api_key(&actor(&operator), None, &prefix)
        .await
    {
        Ok(revoked) => {
            state.keys.forget(&revoked.prefix);
            Ok(Redirect::to("/admin/api-keys"))
        }
        Err(StoreError::NotFound(_)) => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "No such key",
            "There is no key with that prefix.",
        )),
        Err(error) => Err(internal(error)),
    }
}
