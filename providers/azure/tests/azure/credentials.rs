//! Each `[azure.credential]` kind against the sandbox's Entra: certificate (signed client
//! assertion), workload identity (federated token file), managed identity (App Service
//! endpoint on loopback); refusals name the kind; our clock, not the wall clock, decides when a
//! token is fetched again; a token Microsoft refuses is replaced whatever the kind.

use std::{path::PathBuf, sync::Arc};

use marketlink_azure::{AzureProvider, CredentialConfig, Secret};
use marketlink_core::{Clock, ManualClock, ProviderError, SystemClock};
use marketlink_sandbox::azure::AppCertificate;

use crate::common::H;

const SUBJECT: &str = "system:serviceaccount:marketlink:marketlink";

async fn certificate(name: &str) -> AppCertificate {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || AppCertificate::generate(&name))
        .await
        .unwrap()
        .unwrap()
}

/// Writes `cert` (and its key, in the same file) to `dir`.
fn write_pem(dir: &tempfile::TempDir, cert: &AppCertificate) -> PathBuf {
    let path = dir.path().join("api-app.pem");
    std::fs::write(&path, format!("{}{}", cert.cert_pem, cert.key_pem)).unwrap();
    path
}

fn configuration_error(err: ProviderError) -> String {
    match err {
        ProviderError::Configuration(message) => message,
        other => panic!("expected a Configuration error, got {other:?}"),
    }
}

/// The form of every token request, as the sandbox logged the path only: count them instead.
#[tokio::test]
async fn a_certificate_credential_signs_assertions_and_needs_no_secret() {
    let cert = certificate("marketlink api app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_pem(&dir, &cert);
    let registered = cert.cert_pem.clone();
    let h = H::start_with(
        |s| s.app_credentials.certificates = vec![registered],
        |c| {
            c.client_secret = Secret::new("");
            c.credential = Some(CredentialConfig::ClientCertificate {
                certificate: path.clone(),
                private_key: None,
            });
        },
    )
    .await;
    let sub = h.subscribed("basic", None).await;
    assert_eq!(h.token_calls().await, 1);

    // Our clock moves past the refresh point (the wall clock does not): a new token, with a
    // new assertion (a replayed jti would be refused).
    h.clock.advance(time::Duration::minutes(56));
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 2, "refreshed by our clock");
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 2, "then cached");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_certificate_the_app_does_not_have_is_a_configuration_error_naming_the_kind() {
    let registered = certificate("registered").await;
    let presented = certificate("another").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_pem(&dir, &presented);
    let h = H::start_with(
        |s| s.app_credentials.certificates = vec![registered.cert_pem.clone()],
        |c| {
            c.credential = Some(CredentialConfig::ClientCertificate {
                certificate: path.clone(),
                private_key: None,
            });
        },
    )
    .await;
    let (id, _, _) = h.buy("basic", None, 0).await;
    let message = configuration_error(h.provider.subscription(&id.to_string()).await.unwrap_err());
    assert!(message.contains("client_certificate"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("AADSTS700027"), "{message}");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_missing_certificate_file_is_a_configuration_error() {
    let h = H::start_with(
        |_| {},
        |c| {
            c.credential = Some(CredentialConfig::ClientCertificate {
                certificate: "/nonexistent/api-app.pem".into(),
                private_key: None,
            });
        },
    )
    .await;
    let (id, _, _) = h.buy("basic", None, 0).await;
    let message = configuration_error(h.provider.subscription(&id.to_string()).await.unwrap_err());
    assert!(message.contains("client_certificate"), "{message}");
    assert!(message.contains("/nonexistent/api-app.pem"), "{message}");
    assert_eq!(h.token_calls().await, 0);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn workload_identity_reads_the_federated_token_file_at_every_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let configured = file.clone();
    let h = H::start_with(
        |_| {},
        |c| {
            c.client_secret = Secret::new("");
            c.credential = Some(CredentialConfig::WorkloadIdentity {
                token_file: Some(configured),
            });
        },
    )
    .await;
    std::fs::write(
        &file,
        h.sandbox.mint_federated_token(SUBJECT, 3600).unwrap(),
    )
    .unwrap();
    let sub = h.subscribed("basic", None).await;
    assert_eq!(h.token_calls().await, 1);

    // The kubelet rotates the file to a token of another service account: the next fetch
    // reads it, and Entra finds no federated credential for that subject.
    let other = h
        .sandbox
        .mint_federated_token("system:serviceaccount:default:intruder", 3600)
        .unwrap();
    std::fs::write(&file, other).unwrap();
    h.clock.advance(time::Duration::minutes(56));
    let message = configuration_error(h.provider.subscription(&sub.external_id).await.unwrap_err());
    assert!(message.contains("workload_identity"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("AADSTS700213"), "{message}");

    // An expired token in the file: AADSTS700024.
    std::fs::write(&file, h.sandbox.mint_federated_token(SUBJECT, -60).unwrap()).unwrap();
    let message = configuration_error(h.provider.subscription(&sub.external_id).await.unwrap_err());
    assert!(message.contains("AADSTS700024"), "{message}");

    // A good token again: back to work, without a restart.
    std::fs::write(
        &file,
        h.sandbox.mint_federated_token(SUBJECT, 3600).unwrap(),
    )
    .unwrap();
    h.provider.subscription(&sub.external_id).await.unwrap();
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn managed_identity_at_the_loopback_identity_endpoint() {
    let h = H::start().await;
    let mut config = crate::common::provider_config(&h.sandbox);
    config.client_secret = Secret::new("");
    config.credential = Some(CredentialConfig::ManagedIdentity {
        client_id: None,
        endpoint: Some(h.sandbox.identity_endpoint()),
        identity_header: Some(Secret::new("sandbox-identity-header")),
    });
    let provider = AzureProvider::new(config.clone(), Arc::new(h.clock.clone())).unwrap();
    let (id, _, _) = h.buy("basic", None, 0).await;
    provider.subscription(&id.to_string()).await.unwrap();
    assert_eq!(h.calls_to("/msi/token?").await, 1);
    assert_eq!(h.token_calls().await, 0, "no client credentials grant");

    // A wrong identity header: refused, and the error says which credential.
    config.credential = Some(CredentialConfig::ManagedIdentity {
        client_id: None,
        endpoint: Some(h.sandbox.identity_endpoint()),
        identity_header: Some(Secret::new("wrong")),
    });
    let wrong = AzureProvider::new(config, Arc::new(h.clock.clone())).unwrap();
    let message = configuration_error(wrong.subscription(&id.to_string()).await.unwrap_err());
    assert!(message.contains("managed_identity"), "{message}");
    assert!(message.contains("HTTP 401"), "{message}");
    h.sandbox.shutdown().await;
}

/// The 403 recovery of `tokens.rs` with an assertion credential: the refused token is dropped
/// and a new one fetched although azure_identity's own cache (wall clock) would still hand
/// out the old one.
#[tokio::test]
async fn a_token_microsoft_refuses_is_replaced_with_a_workload_identity_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let configured = file.clone();
    let microsoft = ManualClock::new(SystemClock.now());
    let h = H::start_clocked(
        |_| {},
        |c| {
            c.credential = Some(CredentialConfig::WorkloadIdentity {
                token_file: Some(configured),
            })
        },
        Some(microsoft.clone()),
    )
    .await;
    std::fs::write(
        &file,
        h.sandbox.mint_federated_token(SUBJECT, 3 * 3600).unwrap(),
    )
    .unwrap();
    let sub = h.subscribed("basic", None).await;
    assert_eq!(h.token_calls().await, 1);

    microsoft.advance(time::Duration::hours(2));
    h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(h.token_calls().await, 2, "one new token");
    h.sandbox.shutdown().await;
}
