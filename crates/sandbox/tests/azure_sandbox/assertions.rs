//! Client assertions at the token endpoint (certificate and federated), and the App Service
//! managed identity endpoint: what Entra accepts and how it refuses.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marketlink_core::Clock;
use marketlink_sandbox::azure::{AppCertificate, FederatedCredential};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::harness::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPE: &str = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default";
const SUBJECT: &str = "system:serviceaccount:marketlink:marketlink";

fn thumbprint(cert_pem: &str) -> String {
    let body: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    URL_SAFE_NO_PAD.encode(Sha256::digest(STANDARD.decode(body).unwrap()))
}

/// An assertion for `cert`'s thumbprint, signed with `signer`'s key; `claims` overrides.
fn assertion(cert: &AppCertificate, signer: &AppCertificate, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.x5t_s256 = Some(thumbprint(&cert.cert_pem));
    let key = EncodingKey::from_rsa_pem(signer.key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// POSTs a client-assertion grant; returns the status and the body.
async fn redeem(t: &T, client_id: &str, assertion: &str) -> (StatusCode, Value) {
    let tid = &t.sandbox.config().publisher_tenant_id;
    let response = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
            ("scope", SCOPE),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

fn refused_with(result: &(StatusCode, Value), status: StatusCode, code: u32, text: &str) {
    let (got, body) = result;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"], json!("invalid_client"), "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")) && description.contains(text),
        "{body}"
    );
}

async fn certificates() -> (AppCertificate, AppCertificate) {
    tokio::task::spawn_blocking(|| {
        (
            AppCertificate::generate("registered").unwrap(),
            AppCertificate::generate("stranger").unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn certificate_assertions_are_checked_as_entra_checks_them() {
    let (registered, stranger) = certificates().await;
    let cert_pem = registered.cert_pem.clone();
    let t = T::start_with(|c| c.app_credentials.certificates = vec![cert_pem]).await;
    let c = t.sandbox.config().clone();
    let app = c.publisher_app_id.as_str();
    let now = t.clock.now().unix_timestamp();
    let endpoint = t.url(&format!("/{}/oauth2/v2.0/token", c.publisher_tenant_id));
    let claims = |jti: &str| {
        json!({"aud": endpoint, "iss": app, "sub": app, "jti": jti,
               "nbf": now, "iat": now, "exp": now + 600})
    };

    let good = assertion(&registered, &registered, claims("one"));
    let (status, body) = redeem(&t, app, &good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let listed = t
        .http
        .get(t.url(&format!("/api/saas/subscriptions?{API}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK, "the API accepts the token");

    // The same jti again.
    let replay = redeem(&t, app, &good).await;
    refused_with(&replay, StatusCode::UNAUTHORIZED, 50027, "already used");

    // A certificate the app does not have; a registered thumbprint over another key's signature.
    let unknown = redeem(&t, app, &assertion(&stranger, &stranger, claims("two"))).await;
    refused_with(&unknown, StatusCode::UNAUTHORIZED, 700027, "not registered");
    let forged = redeem(&t, app, &assertion(&registered, &stranger, claims("three"))).await;
    refused_with(
        &forged,
        StatusCode::UNAUTHORIZED,
        700027,
        "signature validation",
    );

    // Expired by Microsoft's clock, or not valid before a time well ahead.
    t.clock.advance(time::Duration::minutes(11));
    let expired = redeem(
        &t,
        app,
        &assertion(&registered, &registered, claims("four")),
    )
    .await;
    refused_with(
        &expired,
        StatusCode::UNAUTHORIZED,
        700024,
        "valid time range",
    );
    let mut early = claims("five");
    early["nbf"] = json!(now + 3600);
    early["exp"] = json!(now + 7200);
    let early = redeem(&t, app, &assertion(&registered, &registered, early)).await;
    refused_with(&early, StatusCode::UNAUTHORIZED, 700024, "valid time range");

    // Another audience; a subject that is not the client.
    let now = t.clock.now().unix_timestamp();
    let mut wrong_aud = claims("six");
    wrong_aud["aud"] = json!("https://login.microsoftonline.com/other/oauth2/v2.0/token");
    wrong_aud["nbf"] = json!(now);
    wrong_aud["exp"] = json!(now + 600);
    let wrong_aud = redeem(&t, app, &assertion(&registered, &registered, wrong_aud)).await;
    refused_with(&wrong_aud, StatusCode::UNAUTHORIZED, 50027, "audience");
    let mut wrong_sub = claims("seven");
    wrong_sub["sub"] = json!("someone-else");
    wrong_sub["nbf"] = json!(now);
    wrong_sub["exp"] = json!(now + 600);
    let wrong_sub = redeem(&t, app, &assertion(&registered, &registered, wrong_sub)).await;
    refused_with(&wrong_sub, StatusCode::UNAUTHORIZED, 700021, "client_id");

    // Another app of the directory has no certificate at all.
    let other = &c.other_apps[0];
    let tid = &other.tenant_id;
    let response = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", other.client_id.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", good.as_str()),
            ("scope", SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn federated_tokens_must_match_a_federated_credential() {
    let t = T::start_with(|c| {
        c.app_credentials.federated.push(FederatedCredential {
            issuer: "https://oidc.prod-aks.azure.com/elsewhere/".into(),
            subject: SUBJECT.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
        })
    })
    .await;
    let app = t.sandbox.config().publisher_app_id.clone();

    let good = t.sandbox.mint_federated_token(SUBJECT, 3600).unwrap();
    // The token verifies against the issuer's published keys, as Entra verifies it.
    let issuer = t.url("/workload-identity");
    let discovery: Value = t
        .http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], json!(issuer));
    let jwks: Value = t
        .http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_audience(&["api://AzureADTokenExchange"]);
    validation.set_issuer(&[issuer.as_str()]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(&good, &decoding, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], json!(SUBJECT));

    let (status, body) = redeem(&t, &app, &good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Not single-use: the kubelet's token serves every request until it is rotated.
    let (status, body) = redeem(&t, &app, &good).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let stranger = t
        .sandbox
        .mint_federated_token("system:serviceaccount:default:intruder", 3600)
        .unwrap();
    let refused = redeem(&t, &app, &stranger).await;
    refused_with(&refused, StatusCode::UNAUTHORIZED, 700213, "intruder");

    let expired = t.sandbox.mint_federated_token(SUBJECT, 60).unwrap();
    t.clock.advance(time::Duration::minutes(2));
    let refused = redeem(&t, &app, &expired).await;
    refused_with(
        &refused,
        StatusCode::UNAUTHORIZED,
        700024,
        "valid time range",
    );

    // Not signed by an issuer the sandbox knows.
    let tampered = format!("{}x", &good[..good.len() - 1]);
    let refused = redeem(&t, &app, &tampered).await;
    refused_with(&refused, StatusCode::UNAUTHORIZED, 50027, "signature");
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn federated_issuer_and_audience_must_be_the_registered_ones() {
    let t = T::start_with(|c| {
        c.app_credentials.federated = vec![FederatedCredential {
            issuer: "https://oidc.prod-aks.azure.com/elsewhere/".into(),
            subject: SUBJECT.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
        }]
    })
    .await;
    let app = t.sandbox.config().publisher_app_id.clone();
    let token = t.sandbox.mint_federated_token(SUBJECT, 3600).unwrap();
    let refused = redeem(&t, &app, &token).await;
    refused_with(&refused, StatusCode::UNAUTHORIZED, 700211, "issuer");
    t.sandbox.shutdown().await;

    let t =
        T::start_with(|c| c.app_credentials.federated[0].audiences = vec!["api://other".into()])
            .await;
    let token = t.sandbox.mint_federated_token(SUBJECT, 3600).unwrap();
    let refused = redeem(&t, &app, &token).await;
    refused_with(
        &refused,
        StatusCode::UNAUTHORIZED,
        700212,
        "AzureADTokenExchange",
    );
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn the_app_service_identity_endpoint() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let get = |query: Vec<(&'static str, String)>, header: Option<&'static str>| {
        let mut request = t.http.get(t.sandbox.identity_endpoint()).query(&query);
        if let Some(h) = header {
            request = request.header("X-IDENTITY-HEADER", h);
        }
        request.send()
    };
    let resource = c.marketplace_resource_id.clone();
    let base = || {
        vec![
            ("api-version", "2019-08-01".to_owned()),
            ("resource", resource.clone()),
        ]
    };
    let ok = get(base(), Some("sandbox-identity-header")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    let exp = t.clock.now().unix_timestamp() + c.access_token_ttl_secs;
    assert_eq!(body["expires_on"], json!(exp.to_string()), "a string");
    assert_eq!(body["client_id"], json!(c.publisher_app_id));
    assert_eq!(body["resource"], json!(resource));
    let listed = t
        .http
        .get(t.url(&format!("/api/saas/subscriptions?{API}")))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);

    assert_eq!(
        get(base(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(base(), Some("wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let mut old = base();
    old[0].1 = "2017-09-01".into();
    assert_eq!(
        get(old, Some("sandbox-identity-header"))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let mut other = base();
    other.push(("client_id", "00000000-0000-0000-0000-000000000000".into()));
    assert_eq!(
        get(other, Some("sandbox-identity-header"))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    t.sandbox.shutdown().await;

    let t = T::start_with(|c| c.app_credentials.identity_header = None).await;
    let off = t
        .http
        .get(t.sandbox.identity_endpoint())
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), StatusCode::NOT_FOUND);
    t.sandbox.shutdown().await;
}
