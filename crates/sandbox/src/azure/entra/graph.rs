//! Graph `/v1.0/me` and the OIDC userinfo endpoint, for delegated tokens of signed-in users.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::azure::{
    Shared,
    auth::{bearer, check_token},
    config::{GRAPH_RESOURCE_ID, TestUser},
    http::AppState,
    state::rfc3339,
};

const GRAPH_URL: &str = "https://graph.microsoft.com";

fn graph_error(status: StatusCode, code: &str, message: &str, now: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": now, "request-id": uuid::Uuid::new_v4(), "client-request-id": uuid::Uuid::new_v4()},
            }
        })),
    )
        .into_response()
}

/// The signed-in user of a delegated Graph token.
fn graph_user(shared: &Shared, headers: &HeaderMap) -> Result<TestUser, Box<Response>> {
    let now = rfc3339(shared.now());
    let fail =
        |status, code: &str, message: &str| Box::new(graph_error(status, code, message, &now));
    let token = bearer(headers).ok_or_else(|| {
        fail(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        )
    })?;
    let audiences = [GRAPH_RESOURCE_ID, GRAPH_URL, "https://graph.microsoft.com/"];
    let claims = check_token(shared, token, &audiences)
        .map_err(|e| fail(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", &e))?;
    if claims.get("scp").is_none() {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "/me request is only valid with delegated authentication flow.",
        ));
    }
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    shared.config.user(oid).cloned().ok_or_else(|| {
        fail(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "The user does not exist.",
        )
    })
}

pub(super) async fn graph_me(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let user = match graph_user(&shared, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    axum::Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": user.given_name,
        "jobTitle": null,
        "mail": user.mail,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "surname": user.surname,
        "userPrincipalName": user.user_principal_name,
        "id": user.object_id,
    }))
    .into_response()
}

pub(super) async fn userinfo(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let user = match graph_user(&shared, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let mut body = json!({
        "sub": user.object_id,
        "name": user.display_name,
        "picture": format!("{GRAPH_URL}/v1.0/me/photo/$value"),
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(g) = &user.given_name {
            obj.insert("given_name".into(), json!(g));
        }
        if let Some(s) = &user.surname {
            obj.insert("family_name".into(), json!(s));
        }
        if let Some(m) = &user.mail {
            obj.insert("email".into(), json!(m));
        }
    }
    axum::Json(body).into_response()
}
