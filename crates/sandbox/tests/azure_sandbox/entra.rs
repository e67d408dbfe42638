//! Entra: discovery, JWKS, client credentials, the sign-in flow with PKCE and Graph.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use marketlink_sandbox::azure::PERSONAL_ACCOUNTS_TENANT;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::harness::*;

#[tokio::test]
async fn entra_discovery_jwks_and_client_credentials() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let tid = &c.publisher_tenant_id;

    let discovery: Value = t
        .http
        .get(t.url(&format!("/{tid}/v2.0/.well-known/openid-configuration")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], json!(t.sandbox.issuer_v2(tid)));
    assert_eq!(
        discovery["token_endpoint"],
        json!(t.url(&format!("/{tid}/oauth2/v2.0/token")))
    );
    let common: Value = t
        .http
        .get(t.url("/common/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        common["issuer"]
            .as_str()
            .unwrap()
            .ends_with("/{tenantid}/v2.0")
    );
    let jwks: Value = t
        .http
        .get(t.url("/common/discovery/v2.0/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    let unknown = t
        .http
        .get(t.url("/99999999-9999-4999-8999-999999999999/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);

    // v2 client credentials.
    let token = t.token().await;
    let claims = {
        let key = &jwks["keys"][0];
        let decoding = DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["20e940b3-4c77-4b0b-9a53-9e16a1b010a7"]);
        v.set_issuer(&[format!("https://sts.windows.net/{tid}/")]);
        jsonwebtoken::decode::<Value>(&token, &decoding, &v)
            .unwrap()
            .claims
    };
    assert_eq!(claims["appid"], json!(c.publisher_app_id));
    assert_eq!(claims["tid"], json!(tid));
    assert_eq!(claims["ver"], "1.0");

    // v1 endpoint with resource= and client_secret_basic-free form; numbers are strings.
    let v1: Value = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.publisher_app_id.as_str()),
            ("client_secret", c.publisher_app_secret.expose()),
            ("resource", "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["expires_in"], "3600");
    assert_eq!(v1["resource"], "20e940b3-4c77-4b0b-9a53-9e16a1b010a7");
    assert!(v1["access_token"].is_string());

    // Basic auth works too.
    let basic = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .basic_auth(&c.publisher_app_id, Some(c.publisher_app_secret.expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    // Errors.
    let err = |id: &str, secret: &str, scope: &str, tenant: &str| {
        let t = &t;
        let (id, secret, scope, tenant) = (
            id.to_owned(),
            secret.to_owned(),
            scope.to_owned(),
            tenant.to_owned(),
        );
        async move {
            let r = t
                .http
                .post(t.url(&format!("/{tenant}/oauth2/v2.0/token")))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("scope", &scope),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let scope = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default";
    assert_eq!(
        err(&c.publisher_app_id, "wrong", scope, tid).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    assert_eq!(
        err("nobody", "x", scope, tid).await,
        (StatusCode::BAD_REQUEST, "unauthorized_client".into())
    );
    assert_eq!(
        err(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            "https://graph.microsoft.com/.default",
            tid
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
    assert_eq!(
        err(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            "20e940b3-4c77-4b0b-9a53-9e16a1b010a7",
            tid
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
    assert_eq!(
        err(
            &c.publisher_app_id,
            c.publisher_app_secret.expose(),
            scope,
            &c.other_apps[0].tenant_id
        )
        .await,
        (StatusCode::BAD_REQUEST, "unauthorized_client".into())
    );
    let no_grant = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .form(&[("client_id", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_grant.status(), 400);
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn sign_in_flow_pkce_id_token_and_graph_me() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    // The landing-page app (multi-tenant); the publisher's API app is single-tenant.
    let app = c.landing_app.clone().unwrap();
    let redirect = "http://127.0.0.1:8080/azure/signin-callback";
    let verifier = "a-very-long-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let params = [
        ("client_id", app.client_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", redirect),
        ("scope", "openid profile email offline_access User.Read"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // The sign-in page lists the test users of every tenant for `common`.
    let page = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for user in &c.users {
        assert!(
            page.contains(&user.display_name),
            "{} missing from the sign-in page",
            user.display_name
        );
    }
    // Entra's page takes any account; tenant A's users come first for tenant A.
    let tenant_a = &c.users[0].tenant_id;
    let page_a = t
        .http
        .get(t.url(&format!("/{tenant_a}/oauth2/v2.0/authorize")))
        .query(&params)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |name: &str| page_a.find(name).unwrap();
    assert!(at(&c.users[0].display_name) < at(&c.users[2].display_name));
    // Bad requests.
    let bad_client = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", "nope"),
            ("response_type", "code"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_client.status(), 400);
    let plain = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", app.client_id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("code_challenge", "x"),
            ("code_challenge_method", "plain"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 302);
    assert!(
        plain.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );

    let mut expected = HashMap::new();
    let organisational = c
        .users
        .iter()
        .filter(|u| u.tenant_id != PERSONAL_ACCOUNTS_TENANT);
    for (i, user) in organisational.enumerate() {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("user", &user.object_id));
        let r = t
            .http
            .post(t.url("/common/oauth2/v2.0/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect));
        let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st-123");
        let code = q["code"].clone();

        if i == 0 {
            // Wrong verifier: refused, and the code is spent.
            let r = t
                .http
                .post(t.url("/common/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("client_id", app.client_id.as_str()),
                    ("client_secret", app.client_secret.expose()),
                    ("code_verifier", "wrong"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_grant");
            let r = t
                .http
                .post(t.url("/common/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("client_id", app.client_id.as_str()),
                    ("client_secret", app.client_secret.expose()),
                    ("code_verifier", verifier),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "a code is single use");
            continue;
        }
        let r = t
            .http
            .post(t.url("/common/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("client_id", app.client_id.as_str()),
                ("client_secret", app.client_secret.expose()),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tokens: Value = r.json().await.unwrap();
        let id_token = tokens["id_token"].as_str().unwrap();
        let claims = t
            .verify_via_discovery(&user.tenant_id, id_token, &app.client_id)
            .await;
        assert_eq!(claims["nonce"], "n-456");
        assert_eq!(claims["oid"], json!(user.object_id));
        assert_eq!(claims["tid"], json!(user.tenant_id));
        assert_eq!(
            claims.get("email").cloned(),
            user.mail.clone().map(Value::from)
        );
        let me: Value = t
            .http
            .get(t.url("/v1.0/me"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        expected.insert(user.object_id.clone(), me);
    }
    // Alice again (her first code was spent on the failure cases), through the tenant authority.
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("user", &c.users[0].object_id));
    let r = t
        .http
        .post(t.url(&format!("/{tenant_a}/oauth2/v2.0/authorize")))
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: Value = t
        .http
        .post(t.url(&format!("/{tenant_a}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("client_id", app.client_id.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = t
        .http
        .get(t.url("/v1.0/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    expected.insert(c.users[0].object_id.clone(), me);

    assert_eq!(
        expected[&c.users[0].object_id]["mail"],
        "alice@tailspin.example"
    );
    assert_eq!(expected[&c.users[1].object_id]["mail"], Value::Null);
    assert_eq!(
        expected[&c.users[1].object_id]["userPrincipalName"],
        "bob@tailspin.onmicrosoft.com"
    );
    assert_eq!(expected[&c.users[2].object_id]["mail"], Value::Null);
    assert_eq!(
        expected[&c.users[2].object_id]["userPrincipalName"],
        Value::Null
    );

    // A marketplace (app-only, wrong audience) token and no token on /me: 401.
    let app_token = t.token().await;
    assert_eq!(
        t.http
            .get(t.url("/v1.0/me"))
            .bearer_auth(&app_token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        t.http.get(t.url("/v1.0/me")).send().await.unwrap().status(),
        401
    );
    t.sandbox.shutdown().await;
}
