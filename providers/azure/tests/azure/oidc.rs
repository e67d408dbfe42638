//! Buyer sign-in against the sandbox's Entra look-alike: discovery, authorize (driven without
//! following redirects), code + PKCE exchange, ID-token validation and Graph /me, with the
//! sandbox's multi-tenant landing-page app.

use std::{collections::HashMap, sync::Arc};

use marketlink_azure::oidc::{OidcClient, OidcError, SignInRequest};
use marketlink_sandbox::azure::{PERSONAL_ACCOUNTS_TENANT, SignInAudience};

use crate::common::H;

const REDIRECT: &str = "http://127.0.0.1:8080/azure/signin-callback";

async fn client(h: &H, tenant: &str) -> OidcClient {
    let landing = h.sandbox.config().landing_app.clone().unwrap();
    OidcClient::discover(
        &format!("{}/{tenant}/v2.0", h.sandbox.authority_host()),
        landing.client_id.clone(),
        landing.client_secret.expose(),
        REDIRECT,
        h.provider.http_client(),
        Arc::new(h.clock.clone()),
    )
    .await
    .unwrap()
}

/// Begins a sign-in, opens its authorize URL, picks `user` on the sign-in page; returns what
/// the sign-in keeps and the callback's query.
async fn sign_in(
    h: &H,
    client: &OidcClient,
    user: &str,
) -> (SignInRequest, HashMap<String, String>) {
    let start = client.begin();
    let url = start.url;
    let sent: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(sent["state"], start.request.state);
    assert_eq!(sent["nonce"], start.request.nonce);
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(sent["response_mode"], "query");
    assert_eq!(start.request.pkce_verifier.len(), 43, "256 bits");
    assert!(!format!("{:?}", start.request).contains(&start.request.pkce_verifier));
    let page = h.http.get(url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("user".into(), user.into()));
    let mut endpoint = url.clone();
    endpoint.set_query(None);
    let r = h.http.post(endpoint).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT));
    (start.request, location.query_pairs().into_owned().collect())
}

#[tokio::test]
async fn three_buyers_sign_in_and_read_graph_me() {
    let h = H::start().await;
    let client = client(&h, "organizations").await;
    assert!(client.metadata().issuer.contains("{tenantid}"));
    for (i, (email, contact)) in [
        (
            Some("alice@tailspin.example"),
            Some("alice@tailspin.example"),
        ),
        (None, Some("bob@tailspin.onmicrosoft.com")),
        (None, None),
    ]
    .into_iter()
    .enumerate()
    {
        let user = h.user(i);
        let (request, q) = sign_in(&h, &client, &user.object_id).await;
        assert_eq!(q["state"], request.state);
        let tokens = client
            .exchange_code(&q["code"], &request.pkce_verifier, &request.nonce)
            .await
            .unwrap();
        let claims = &tokens.id_token_claims;
        assert_eq!(claims.tid, user.tenant_id);
        assert_eq!(claims.oid.as_deref(), Some(user.object_id.as_str()));
        assert_eq!(claims.name.as_deref(), Some(user.display_name.as_str()));
        assert_eq!(claims.email.as_deref(), email);
        assert_eq!(
            claims.issuer,
            format!("{}/{}/v2.0", h.sandbox.base_url, user.tenant_id)
        );
        let me = client
            .graph_me(&tokens.access_token, &h.sandbox.graph_base())
            .await
            .unwrap();
        assert_eq!(me.id.as_deref(), Some(user.object_id.as_str()));
        assert_eq!(me.display_name.as_deref(), Some(user.display_name.as_str()));
        assert_eq!(me.mail, user.mail);
        assert_eq!(me.user_principal_name, user.user_principal_name);
        assert_eq!(me.contact_email(), contact, "user {i}");
        assert!(!format!("{tokens:?}").contains(tokens.access_token.expose()));

        if i == 0 {
            // The code is single use.
            let err = client
                .exchange_code(&q["code"], &request.pkce_verifier, &request.nonce)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, OidcError::Refused { error, .. } if error == "invalid_grant"),
                "{err:?}"
            );
            // The ID token expires by our clock.
            h.clock.advance(time::Duration::hours(2));
            let err = client
                .validate_id_token(&tokens.id_token, &request.nonce)
                .await
                .unwrap_err();
            assert!(matches!(err, OidcError::InvalidIdToken(_)), "{err:?}");
            h.clock.advance(time::Duration::hours(-2));
        }
    }
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn nonce_verifier_tenant_and_graph_refusals() {
    let h = H::start().await;
    let client = client(&h, "common").await;
    let alice = h.user(0);

    // Another nonce than the one sent: refused.
    let (request, q) = sign_in(&h, &client, &alice.object_id).await;
    let err = client
        .exchange_code(&q["code"], &request.pkce_verifier, "another-nonce")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OidcError::InvalidIdToken(m) if m.contains("nonce")),
        "{err:?}"
    );

    // Wrong PKCE verifier.
    let (request, q) = sign_in(&h, &client, &alice.object_id).await;
    let err = client
        .exchange_code(
            &q["code"],
            "wrong-verifier-wrong-verifier-wrong-verifier",
            &request.nonce,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::Refused { .. }), "{err:?}");

    // Tenant allow-list: Carol's tenant is not on it.
    let only_a = client.with_allowed_tenants(vec![alice.tenant_id.clone()]);
    let carol = h.user(2);
    let (request, q) = sign_in(&h, &only_a, &carol.object_id).await;
    let err = only_a
        .exchange_code(&q["code"], &request.pkce_verifier, &request.nonce)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OidcError::NotAdmitted(m) if m.contains(&carol.tenant_id)),
        "{err:?}"
    );

    // A single-tenant authority: exact issuer.
    let tenant_client = client_for_tenant(&h, &alice.tenant_id).await;
    assert!(!tenant_client.metadata().issuer.contains("{tenantid}"));
    let (request, q) = sign_in(&h, &tenant_client, &alice.object_id).await;
    let tokens = tenant_client
        .exchange_code(&q["code"], &request.pkce_verifier, &request.nonce)
        .await
        .unwrap();
    assert_eq!(tokens.id_token_claims.tid, alice.tenant_id);

    // Graph refuses a token that is not a delegated Graph token.
    let err = marketlink_azure::oidc::graph_me(
        &h.provider.http_client(),
        "not-a-token",
        &h.sandbox.graph_base(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, OidcError::Graph { status: 401, .. }),
        "{err:?}"
    );

    // Discovery of an unknown tenant is a configuration problem.
    let err = OidcClient::discover(
        &format!("{}/no-such-tenant/v2.0", h.sandbox.authority_host()),
        "x",
        "y",
        REDIRECT,
        h.provider.http_client(),
        Arc::new(h.clock.clone()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OidcError::Configuration(_)), "{err:?}");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn personal_accounts_only_when_admitted() {
    // The landing app admits personal accounts at Entra; the vendor may still refuse them.
    let h = H::start_with(
        |c| {
            if let Some(app) = c.landing_app.as_mut() {
                app.sign_in_audience = SignInAudience::AzureADandPersonalMicrosoftAccount;
            }
        },
        |_| {},
    )
    .await;
    let dave = h
        .sandbox
        .config()
        .users
        .iter()
        .find(|u| u.tenant_id == PERSONAL_ACCOUNTS_TENANT)
        .unwrap()
        .clone();
    let admitting = client(&h, "common").await;
    let (request, q) = sign_in(&h, &admitting, &dave.object_id).await;
    let tokens = admitting
        .exchange_code(&q["code"], &request.pkce_verifier, &request.nonce)
        .await
        .unwrap();
    assert_eq!(tokens.id_token_claims.tid, PERSONAL_ACCOUNTS_TENANT);

    let refusing = client(&h, "common").await.with_personal_accounts(false);
    let (request, q) = sign_in(&h, &refusing, &dave.object_id).await;
    let err = refusing
        .exchange_code(&q["code"], &request.pkce_verifier, &request.nonce)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OidcError::NotAdmitted(m) if m.contains("personal")),
        "{err:?}"
    );
    h.sandbox.shutdown().await;
}

async fn client_for_tenant(h: &H, tenant: &str) -> OidcClient {
    client(h, tenant).await
}
