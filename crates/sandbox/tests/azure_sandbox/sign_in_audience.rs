//! Who may sign in at the authorize endpoint: the app's sign-in audience against the authority
//! and the account (Entra's AADSTS50194, AADSTS700016 and AADSTS50020 error pages), a declined
//! consent sent back to the app (AADSTS65004), and the call log's app ids.

use marketlink_sandbox::azure::{ClientApp, PERSONAL_ACCOUNTS_TENANT, SignInAudience};
use reqwest::StatusCode;

use super::harness::*;

const REDIRECT: &str = "http://127.0.0.1:8080/azure/signin/callback";

fn params(client_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", client_id.to_owned()),
        ("response_type", "code".into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", "openid profile email User.Read".into()),
        ("state", "st-1".into()),
        ("nonce", "n-1".into()),
    ]
}

/// GET the authorize page of `app` at `tenant`: (status, body).
async fn open(t: &T, tenant: &str, app: &str) -> (StatusCode, String) {
    let r = t
        .http
        .get(t.url(&format!("/{tenant}/oauth2/v2.0/authorize")))
        .query(&params(app))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// POST the sign-in of `user` (or `cancel`): the response.
async fn pick(t: &T, tenant: &str, app: &str, field: (&'static str, &str)) -> reqwest::Response {
    let mut form = params(app);
    form.push((field.0, field.1.to_owned()));
    t.http
        .post(t.url(&format!("/{tenant}/oauth2/v2.0/authorize")))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// An Entra error page (no redirect: the app never hears of it) carrying `code`.
async fn error_page(r: reqwest::Response, code: &str) -> String {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("trouble signing you in"), "{page}");
    assert!(page.contains(code), "{code}: {page}");
    page
}

fn personal(t: &T) -> String {
    t.sandbox
        .config()
        .users
        .iter()
        .find(|u| u.tenant_id == PERSONAL_ACCOUNTS_TENANT)
        .unwrap()
        .object_id
        .clone()
}

fn landing(t: &T) -> ClientApp {
    t.sandbox.config().landing_app.clone().unwrap()
}

#[tokio::test]
async fn the_single_tenant_api_app_signs_in_only_its_own_tenant() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let api = c.publisher_app_id.as_str();
    for authority in ["common", "organizations"] {
        let (status, page) = open(&t, authority, api).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("AADSTS50194"), "{page}");
        assert!(page.contains("not configured as a multi-tenant application"));
    }
    let alice = &c.users[0];
    let (status, page) = open(&t, &alice.tenant_id, api).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("AADSTS700016"), "{page}");
    // At its own tenant, a user of another tenant is refused on Entra's page.
    let (status, _) = open(&t, &c.publisher_tenant_id, api).await;
    assert_eq!(status, StatusCode::OK);
    let r = pick(&t, &c.publisher_tenant_id, api, ("user", &alice.object_id)).await;
    let page = error_page(r, "AADSTS50020").await;
    assert!(page.contains(alice.mail.as_deref().unwrap()), "{page}");
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn the_multi_tenant_landing_app_admits_organisations_not_personal_accounts() {
    let t = T::start().await;
    let app = landing(&t);
    let alice = t.sandbox.config().users[0].clone();
    let r = pick(
        &t,
        "organizations",
        &app.client_id,
        ("user", &alice.object_id),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(r.headers()["location"].to_str().unwrap().contains("code="));
    let dave = personal(&t);
    for authority in ["organizations", "common"] {
        let r = pick(&t, authority, &app.client_id, ("user", &dave)).await;
        let page = error_page(r, "AADSTS50020").await;
        assert!(page.contains("live.com"), "{page}");
    }
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn personal_accounts_where_the_app_admits_them_but_never_at_organizations() {
    let t = T::start_with(|c| {
        if let Some(app) = c.landing_app.as_mut() {
            app.sign_in_audience = SignInAudience::AzureADandPersonalMicrosoftAccount;
        }
    })
    .await;
    let app = landing(&t);
    let dave = personal(&t);
    for authority in ["common", "consumers"] {
        let r = pick(&t, authority, &app.client_id, ("user", &dave)).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{authority}");
    }
    let r = pick(&t, "organizations", &app.client_id, ("user", &dave)).await;
    error_page(r, "AADSTS50020").await;
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_declined_consent_goes_back_to_the_app() {
    let t = T::start().await;
    let app = landing(&t);
    let (_, page) = open(&t, "organizations", &app.client_id).await;
    assert!(page.contains("name=\"cancel\""), "the page offers Cancel");
    let r = pick(&t, "organizations", &app.client_id, ("cancel", "1")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["error_subcode"], "cancel");
    assert!(q["error_description"].starts_with("AADSTS65004"));
    assert_eq!(q["state"], "st-1");
    assert!(!q.contains_key("code"));
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn the_call_log_names_the_app_behind_each_call() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let app = landing(&t);
    let token = t.token().await;
    let r = t
        .http
        .get(t.url(&format!("/api/saas/subscriptions?{API}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The landing app may get a token but not call the marketplace API.
    let landing_token = t
        .token_for(
            &app.client_id,
            app.client_secret.expose(),
            &c.publisher_tenant_id,
        )
        .await;
    let r = t
        .http
        .get(t.url(&format!("/api/saas/subscriptions?{API}")))
        .bearer_auth(&landing_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let log = t.sandbox.call_log().await;
    let apps = |path: &str| -> Vec<(Option<String>, u16)> {
        log.iter()
            .filter(|e| e.path.contains(path))
            .map(|e| (e.app_id.clone(), e.status))
            .collect()
    };
    assert_eq!(
        apps("/api/saas/subscriptions"),
        vec![
            (Some(c.publisher_app_id.clone()), 200),
            (Some(app.client_id.clone()), 403)
        ]
    );
    let tokens = apps("/oauth2/v2.0/token");
    assert_eq!(tokens.last(), Some(&(Some(app.client_id.clone()), 200)));
    assert!(tokens.contains(&(Some(c.publisher_app_id.clone()), 200)));
    t.sandbox.shutdown().await;
}
