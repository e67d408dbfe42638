//! Sign-up keys and JWTs, the buyer page's POST to the sign-up URL, and the token endpoint.

use std::collections::HashMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use marketlink_sandbox::gcp::{PurchaseRequest, SIGN_UP_ISSUER};
use reqwest::StatusCode;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use x509_cert::{
    Certificate,
    der::{DecodePem, referenced::OwnedToRef},
};

use super::harness::*;

const X509_PATH: &str = "/robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com";

/// Verifies `token` as a vendor does: the key named by `kid` from the x509 endpoint, RS256,
/// the pinned issuer and the product domain as audience.
async fn verify(t: &T, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let keys: Value = t.get_json(&format!("{}{X509_PATH}", t.base)).await;
    let kid = jsonwebtoken::decode_header(token)?.kid.unwrap();
    let pem = keys[&kid].as_str().expect("kid is published");
    let cert = Certificate::from_pem(pem.as_bytes()).unwrap();
    let public =
        rsa::RsaPublicKey::try_from(cert.tbs_certificate.subject_public_key_info.owned_to_ref())
            .unwrap();
    let public_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[SIGN_UP_ISSUER]);
    validation.set_audience(&[t.sandbox.config().product_domain.as_str()]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|d| d.claims)
}

#[tokio::test]
async fn sign_up_jwt_verifies_with_the_published_certificate() {
    let t = T::start().await;
    let purchase = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let header = jsonwebtoken::decode_header(&purchase.sign_up_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let claims = verify(&t, &purchase.sign_up_token).await.unwrap();
    assert_eq!(claims["iss"], SIGN_UP_ISSUER);
    assert_eq!(claims["aud"], "marketlink.example.com");
    assert_eq!(claims["sub"], purchase.account_id.as_str());
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 300);
    assert_eq!(claims["google"]["orders"], json!([purchase.order_id]));
}

#[tokio::test]
async fn forged_or_foreign_tokens_fail_verification() {
    let t = T::start().await;
    let claims = t.sandbox.sign_up_claims("acct-1");
    let forged = t.sandbox.sign_up_token_with_claims(&claims, true).unwrap();
    let error = verify(&t, &forged).await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature
        ),
        "{error:?}"
    );
    let mut other_aud = claims.clone();
    other_aud["aud"] = "evil.example.com".into();
    let token = t
        .sandbox
        .sign_up_token_with_claims(&other_aud, false)
        .unwrap();
    assert!(verify(&t, &token).await.is_err());
    let genuine = t.sandbox.sign_up_token("acct-1", None).unwrap();
    assert_eq!(verify(&t, &genuine).await.unwrap()["sub"], "acct-1");
}

#[tokio::test]
async fn jwk_form_publishes_the_same_key() {
    let t = T::start().await;
    let path = X509_PATH.replace("/x509/", "/jwk/");
    let jwks: Value = t.get_json(&format!("{}{path}", t.base)).await;
    let jwk = &jwks["keys"][0];
    let token = t.sandbox.sign_up_token("acct-2", None).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        jwk["kid"].as_str()
    );
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["marketlink.example.com"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_ok());
}

#[tokio::test]
async fn buyer_page_posts_the_token_as_a_form_to_the_sign_up_url() {
    let t = T::start_with(|c| c.signup_url = Some("http://vendor.test/signup".into())).await;
    let page = t
        .http
        .get(format!("{}/sandbox/gcp/buyer", t.base))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("Purchase"));
    let response = t
        .http
        .post(format!("{}/sandbox/gcp/buyer/purchase", t.base))
        .form(&[("plan", "pro")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("action=\"http://vendor.test/signup\""),
        "{html}"
    );
    let token = html
        .split("name=x-gcp-marketplace-token value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let claims = verify(&t, token).await.unwrap();
    let account = t.sandbox.account(claims["sub"].as_str().unwrap()).unwrap();
    assert_eq!(account.approvals[0].name, "signup");
}

#[tokio::test]
async fn token_endpoint_checks_the_assertion() {
    let t = T::start().await;
    let good = t.assertion_claims("https://www.googleapis.com/auth/cloud-platform");
    let (status, body) = t.exchange(&t.assertion(good.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));

    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        t.assertion(claims)
    };
    let now = good["iat"].as_i64().unwrap();
    let forged = t.sandbox.sign_up_token_with_claims(&good, true).unwrap();
    let cases = [
        (forged, "invalid_grant"),
        (
            with("aud", "https://other.example/token".into()),
            "invalid_grant",
        ),
        (
            with("iss", "someone@else.iam.gserviceaccount.com".into()),
            "invalid_grant",
        ),
        (with("exp", (now - 10).into()), "invalid_grant"),
        (with("exp", (now + 7200).into()), "invalid_grant"),
        (with("scope", "".into()), "invalid_scope"),
    ];
    for (assertion, error) in cases {
        let (status, body) = t.exchange(&assertion).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], error, "{body}");
    }
    let response = t
        .http
        .post(format!("{}/token", t.base))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

/// Google's header for the assertion is `{"alg":"RS256","typ":"JWT"}`, without `kid`
/// (developers.google.com/identity/protocols/oauth2/service-account#formingheader): the
/// account's key checks it. A `kid` that is sent must still be the key's, and a header
/// without one does not let another key's signature through.
#[tokio::test]
async fn token_endpoint_takes_googles_header_without_kid() {
    let t = T::start().await;
    let claims = t.assertion_claims("https://www.googleapis.com/auth/cloud-platform");
    let key = t.sandbox.service_account_key().unwrap();
    let sign = |kid: Option<&str>, pem: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = kid.map(str::to_owned);
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
    };
    let without_kid = sign(None, &key.private_key);
    let header_json = URL_SAFE_NO_PAD
        .decode(without_kid.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header_json).unwrap();
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
    let (status, body) = t.exchange(&without_kid).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));

    let other = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let other_pem = other.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    for forged in [
        sign(None, &other_pem),
        sign(Some("0123456789abcdef"), &key.private_key),
    ] {
        let (status, body) = t.exchange(&forged).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert_eq!(
            body["error_description"], "Invalid JWT Signature.",
            "{body}"
        );
    }
}

#[tokio::test]
async fn apis_need_a_live_token_and_the_key_file_looks_like_googles() {
    let t = T::start().await;
    let path = format!("{}/entitlements", t.provider());
    let (status, body) = t.call_as("ya29.made-up", "GET", &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(google_status(&body, 401), "UNAUTHENTICATED");
    let (status, _) = t.call("GET", &path, None).await;
    assert_eq!(status, StatusCode::OK);
    t.clock.advance(time::Duration::seconds(3600));
    let (status, _) = t.call("GET", &path, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the token expired by the sandbox clock"
    );

    let key: Value = serde_json::from_str(&t.sandbox.service_account_key_json().unwrap()).unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["token_uri"], format!("{}/token", t.base));
    assert!(
        key["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let debug = format!("{:?}", t.sandbox.service_account_key().unwrap());
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[tokio::test]
async fn submit_sign_up_posts_the_form_field_like_a_browser() {
    use std::sync::{Arc, Mutex};

    use axum::{Form, Router, extract::State, routing::post};

    type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;
    async fn signup(
        State(seen): State<Seen>,
        headers: axum::http::HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> &'static str {
        let content_type = headers["content-type"].to_str().unwrap().to_owned();
        seen.lock().unwrap().push((content_type, form));
        "welcome"
    }
    let seen: Seen = Arc::default();
    let vendor = serve(
        Router::new()
            .route("/signup", post(signup))
            .with_state(seen.clone()),
    )
    .await;
    let t = T::start_with(|c| c.signup_url = Some(format!("{vendor}/signup"))).await;
    let purchase = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let response = t
        .sandbox
        .submit_sign_up(&purchase.sign_up_token)
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "welcome");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "application/x-www-form-urlencoded");
    assert_eq!(seen[0].1["x-gcp-marketplace-token"], purchase.sign_up_token);
}

#[tokio::test]
async fn a_token_only_reaches_the_apis_its_scopes_allow() {
    let t = T::start().await;
    let pubsub_only = t
        .access_token("https://www.googleapis.com/auth/pubsub")
        .await;
    let pull = "/v1/projects/marketlink-demo/subscriptions/marketlink-procurement:pull";
    let (status, _) = t
        .call_as(&pubsub_only, "POST", pull, Some(json!({"maxMessages": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let entitlements = format!("{}/entitlements", t.provider());
    let (status, body) = t.call_as(&pubsub_only, "GET", &entitlements, None).await;
    assert_eq!(
        (status, google_status(&body, 403).as_str()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED")
    );
    let check = "/v1/services/marketlink.example.com:check";
    let (status, _) = t
        .call_as(&pubsub_only, "POST", check, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = t.call_as("", "POST", check, Some(json!({}))).await;
    assert_eq!(
        (status, google_status(&body, 401).as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
}
