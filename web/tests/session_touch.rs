//! A session kept busy on pages that only read (the admin portal here) stays alive: its idle
//! lifetime is extended after such a page, as it is after a page that saves. The server runs
//! in process on a manual clock, so twelve hours pass in a test.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use marketlink_core::{Catalog, ManualClock};
use marketlink_engine::{ChangePolicy, Engine, Providers};
use marketlink_store::{Store, StoreOptions};
use marketlink_web::{App, AppState, WebSettings, admin::AdminUser, password};
use time::{Duration, macros::datetime};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

async fn app(dir: &tempfile::TempDir, clock: &ManualClock) -> Router {
    let url = format!("sqlite:{}", dir.path().join("m.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let engine = Engine::new(
        store,
        Providers::new(),
        Arc::new(clock.clone()),
        Arc::new(Catalog::default()),
        ChangePolicy::default(),
    );
    let settings = WebSettings {
        admins: vec![AdminUser {
            email: "ops@vendor.example".into(),
            password_hash: password::hash(PASSWORD.into()).await.unwrap(),
        }],
        ..WebSettings::default()
    };
    marketlink_web::router(AppState::new(App {
        engine: Arc::new(engine),
        keys: Default::default(),
        sign_in_attempts: Default::default(),
        settings,
    }))
}

/// Sends a request with `cookie`; returns the status, the `Set-Cookie` value (if any) and the
/// body.
async fn send(
    app: &Router,
    request: axum::http::request::Builder,
    cookie: &str,
    body: String,
) -> (StatusCode, Option<String>, String) {
    let request = request
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, set, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path)
}

#[tokio::test]
async fn reading_pages_keep_an_operator_session_alive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(datetime!(2026-12-07 08:00 UTC));
    let app = app(&dir, &clock).await;

    let (_, cookie, page) = send(&app, get("/admin/login"), "", String::new()).await;
    let mut cookie = cookie.expect("a session for the login form");
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let csrf = page[start..].split('"').next().unwrap();
    let form =
        format!("csrf={csrf}&email=ops%40vendor.example&password=correct+horse+battery+staple");
    let (status, signed_in, _) = send(&app, Request::post("/admin/login"), &cookie, form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    cookie = signed_in.expect("a new session id at sign-in");

    // Busy for a day and a half on pages that only read, never 12 hours apart.
    for hour in [11, 22, 33] {
        clock.advance(Duration::hours(11));
        let (status, renewed, _) = send(&app, get("/admin"), &cookie, String::new()).await;
        assert_eq!(status, StatusCode::OK, "still signed in at hour {hour}");
        cookie = renewed.expect("the cookie is sent again with a new lifetime");
    }
    // Within a minute of the last extension nothing is written or sent again.
    clock.advance(Duration::seconds(30));
    let (status, renewed, _) = send(&app, get("/admin"), &cookie, String::new()).await;
    assert_eq!((status, renewed), (StatusCode::OK, None));
    // Idle past its lifetime, it ends.
    clock.advance(Duration::hours(13));
    let (status, _, _) = send(&app, get("/admin"), &cookie, String::new()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "ended after 13 idle hours");
}
