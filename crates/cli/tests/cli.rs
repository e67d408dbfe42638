//! The `marketlink` binary as an operator runs it: migrate, serve, health, SIGTERM.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, Server, free_port, marketlink, terminate, wait_ready};

async fn serve_and_probe(dir: &std::path::Path, database_url: &str) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server(
        marketlink(dir)
            .arg("serve")
            .env("MARKETLINK_SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("MARKETLINK_DATABASE__URL", database_url)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = wait_ready(&base).await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let request_id = health
        .headers()
        .get("x-request-id")
        .expect("request id echoed");
    assert!(!request_id.is_empty());
    let missing = reqwest::get(format!("{base}/no-such-page")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let status = terminate(&mut server).await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn serves_on_sqlite_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    serve_and_probe(dir.path(), "sqlite:marketlink.db").await;
    assert!(
        dir.path().join("marketlink.db").exists(),
        "the SQLite file is created on first run"
    );
}

#[tokio::test]
async fn migrate_then_serve_on_postgres() {
    if std::env::var("MARKETLINK_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        return;
    }
    let admin = std::env::var("MARKETLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("marketlink_cli_{}", std::process::id());
    let psql = |sql: String| {
        let status = Command::new("psql")
            .args([admin.as_str(), "-q", "-c", &sql])
            .stdout(Stdio::null())
            .status()
            .expect("psql is installed");
        assert!(status.success(), "{sql}");
    };
    psql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();

    let dry = marketlink(dir.path())
        .args(["migrate", "--dry-run"])
        .env("MARKETLINK_DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(dry.status.success());
    let listed = String::from_utf8_lossy(&dry.stdout);
    assert!(listed.contains("would be applied"), "{listed}");
    // Each says whether the previous release may keep serving while it applies.
    assert!(
        listed.contains("20261209000100_web sessions: online-safe"),
        "{listed}"
    );

    let applied = marketlink(dir.path())
        .arg("migrate")
        .env("MARKETLINK_DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(String::from_utf8_lossy(&applied.stdout).contains("applied"));

    let again = marketlink(dir.path())
        .arg("migrate")
        .env("MARKETLINK_DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    serve_and_probe(dir.path(), &url).await;
    psql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

#[test]
fn bad_configuration_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), "[server]\nbnd = \"x\"\n").unwrap();
    let output = marketlink(dir.path())
        .args(["--config", "m.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bnd"), "{stderr}");

    let output = marketlink(dir.path())
        .arg("migrate")
        .env("MARKETLINK_DATABASE__URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.url"));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["demo", "--help"],
        vec!["config", "--help"],
        vec!["doctor", "--help"],
        vec!["reconcile", "--help"],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    let example = Command::new(BIN).arg("config").output().unwrap();
    assert!(String::from_utf8_lossy(&example.stdout).contains("[database]"));
}

/// A configuration selling one product through the AWS sandbox at `sandbox`.
fn doctor_config(sandbox: &str) -> String {
    format!(
        r#"
[database]
url = "sqlite:doctor.db"

[[catalog.products]]
id = "analytics"
name = "Analytics"
[[catalog.products.listings]]
marketplace = "aws"
product_code = "mlsandboxclassic0000000001"
[[catalog.products.plans]]
id = "basic"

[aws]
endpoint_url = "{sandbox}"
sqs_queue_urls = ["{sandbox}/111122223333/aws-mp-sns-notifications"]

[aws.credentials]
access_key_id = "AKIASANDBOX"
secret_access_key = "sandbox-secret"

[[aws.products]]
product_code = "mlsandboxclassic0000000001"
notification_mode = "sns"
identity_mode = "classic"
subscription_topic_arn = "arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-mlsandboxclassic0000000001"
"#
    )
}

/// `marketlink doctor` as an operator runs it, against an AWS sandbox: exit 0 when the
/// configuration works, 1 with the cause on stdout when the secret key is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_exits_1_and_names_the_cause() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let aws = marketlink_cli::sandbox::start_aws(
        "127.0.0.1:0".parse().unwrap(),
        marketlink_sandbox::aws::AwsSandboxConfig::default(),
        &marketlink_cli::sandbox::VendorUrls::for_public_url("http://127.0.0.1:9"),
        std::sync::Arc::new(marketlink_core::SystemClock),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let sandbox = aws.base_url;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), doctor_config(&sandbox)).unwrap();
    let run = |extra: Vec<(&'static str, &'static str)>, args: Vec<&'static str>| {
        let mut command = marketlink(dir.path());
        command.args(["--config", "m.toml"]).args(args);
        for (k, v) in extra {
            command.env(k, v);
        }
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    let migrated = run(vec![], vec!["migrate"]).await.unwrap();
    assert!(migrated.status.success());
    let good = run(vec![], vec!["doctor"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 failure(s)"), "{stdout}");
    assert!(stdout.contains("ok    aws.credentials"), "{stdout}");

    let broken = run(
        vec![("MARKETLINK_AWS__CREDENTIALS__SECRET_ACCESS_KEY", "wrong")],
        vec!["doctor"],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  aws.credentials"), "{stdout}");
    assert!(stdout.contains("secret_access_key is wrong"), "{stdout}");

    let json = run(
        vec![("MARKETLINK_AWS__CREDENTIALS__SECRET_ACCESS_KEY", "wrong")],
        vec!["doctor", "--json"],
    )
    .await
    .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["summary"]["failures"], 1, "{report}");
    shutdown.cancel();
}

/// Without `[aws.credentials]` the standard AWS chain is used: here the environment's keys,
/// which the sandbox checks (SigV4 with AKIASANDBOX). Doctor names the source, never the
/// secret; with no source at all it says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_credential_source_and_calls_are_signed_with_it() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let aws = marketlink_cli::sandbox::start_aws(
        "127.0.0.1:0".parse().unwrap(),
        marketlink_sandbox::aws::AwsSandboxConfig::default(),
        &marketlink_cli::sandbox::VendorUrls::for_public_url("http://127.0.0.1:9"),
        std::sync::Arc::new(marketlink_core::SystemClock),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let without_keys = doctor_config(&aws.base_url).replace(
        "[aws.credentials]\naccess_key_id = \"AKIASANDBOX\"\nsecret_access_key = \"sandbox-secret\"\n",
        "",
    );
    assert!(!without_keys.contains("[aws.credentials]"));
    std::fs::write(dir.path().join("m.toml"), without_keys).unwrap();
    let run = |env: Vec<(&'static str, &'static str)>| {
        let mut command = marketlink(dir.path());
        command.args(["--config", "m.toml", "doctor"]);
        for (k, v) in env {
            command.env(k, v);
        }
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let migrated = marketlink(dir.path())
        .args(["--config", "m.toml", "migrate"])
        .output()
        .unwrap();
    assert!(migrated.status.success());

    let good = run(vec![
        ("AWS_ACCESS_KEY_ID", "AKIASANDBOX"),
        ("AWS_SECRET_ACCESS_KEY", "sandbox-secret"),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok    aws.credentials.source")
            && stdout.contains("credentials come from the environment (AWS_ACCESS_KEY_ID"),
        "{stdout}"
    );
    // The sandbox accepted calls signed with the environment's keys.
    assert!(
        stdout.contains("AWS accepted access key AKIASANDBOX from the environment"),
        "{stdout}"
    );
    assert!(!stdout.contains("sandbox-secret"), "{stdout}");

    // A wrong secret in the environment: the signature fails, and doctor says where to look.
    let wrong = run(vec![
        ("AWS_ACCESS_KEY_ID", "AKIASANDBOX"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-sandbox-secret"),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  aws.credentials ")
            && stdout.contains("AWS_SECRET_ACCESS_KEY is wrong"),
        "{stdout}"
    );
    assert!(!stdout.contains("not-the-sandbox-secret"), "{stdout}");

    // No source at all (no keys, no profile, no role, metadata disabled).
    let none = run(vec![]).await.unwrap();
    let stdout = String::from_utf8_lossy(&none.stdout);
    assert_eq!(none.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  aws.credentials.source")
            && stdout.contains("no AWS credentials")
            && stdout.contains("AWS_ACCESS_KEY_ID"),
        "{stdout}"
    );
    shutdown.cancel();
}

/// Variables azure_identity reads: none of the caller's may leak into a test.
const AZURE_IDENTITY_VARIABLES: &[&str] = &[
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
];

/// A configuration selling one product through the Microsoft sandbox, with `credential` as
/// the `[azure.credential]` table.
fn azure_doctor_config(
    sandbox: &marketlink_sandbox::azure::AzureSandboxHandle,
    ca: &std::path::Path,
    credential: &str,
) -> String {
    let c = sandbox.config();
    format!(
        r#"
[database]
url = "sqlite:doctor.db"

[[catalog.products]]
id = "analytics"
name = "Analytics"
[[catalog.products.listings]]
marketplace = "azure"
product_code = "contoso-analytics"
[[catalog.products.plans]]
id = "basic"

[azure]
tenant_id = "{tenant}"
client_id = "{client}"
authority_host = "{base}"
marketplace_api_base = "{base}/api"
extra_ca_pem = "{ca}"

[azure.credential]
{credential}
"#,
        tenant = c.publisher_tenant_id,
        client = c.publisher_app_id,
        base = sandbox.base_url,
        ca = ca.display(),
    )
}

/// `marketlink doctor` names the Azure credential (kind, app, where its secret comes from) and
/// fetches a token with it. The credentials here are azure_identity's own, configured by the
/// environment as App Service and AKS set it (the sandbox plays both, on loopback only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_azure_credential_and_fetches_a_token_with_it() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let azure = marketlink_cli::sandbox::start_azure(
        "127.0.0.1:0".parse().unwrap(),
        marketlink_sandbox::azure::AzureSandboxConfig::default(),
        &marketlink_cli::sandbox::VendorUrls::for_public_url("http://127.0.0.1:9"),
        std::sync::Arc::new(marketlink_core::SystemClock),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &azure.ca_pem).unwrap();
    let run = |config: String, env: Vec<(&'static str, String)>| {
        std::fs::write(dir.path().join("m.toml"), config).unwrap();
        let mut command = marketlink(dir.path());
        command.args(["--config", "m.toml"]);
        for name in AZURE_IDENTITY_VARIABLES {
            command.env_remove(name);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        command
    };
    let migrated = run(azure_doctor_config(&azure, &ca, ""), vec![])
        .arg("migrate")
        .output();
    // An empty [azure.credential] table has no kind: refused, naming the key.
    assert_eq!(migrated.unwrap().status.code(), Some(2));
    let migrated = run(
        azure_doctor_config(&azure, &ca, "kind = \"managed_identity\""),
        vec![],
    )
    .arg("migrate")
    .output()
    .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");

    // App Service: IDENTITY_ENDPOINT and IDENTITY_HEADER in the environment.
    let doctor = |config: String, env: Vec<(&'static str, String)>| {
        let mut command = run(config, env);
        command.arg("doctor");
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let app_service = vec![
        ("IDENTITY_ENDPOINT", azure.identity_endpoint()),
        ("IDENTITY_HEADER", "sandbox-identity-header".to_owned()),
    ];
    let out = doctor(
        azure_doctor_config(&azure, &ca, "kind = \"managed_identity\""),
        app_service,
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok    azure.credential")
            && stdout.contains(
                "managed_identity: the system-assigned identity (endpoint from IDENTITY_ENDPOINT"
            ),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok    azure.token") && stdout.contains("(managed_identity)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok    azure.fulfillment_api"), "{stdout}");

    // A wrong header: the token fails and doctor says which credential.
    let out = doctor(
        azure_doctor_config(&azure, &ca, "kind = \"managed_identity\""),
        vec![
            ("IDENTITY_ENDPOINT", azure.identity_endpoint()),
            ("IDENTITY_HEADER", "wrong".to_owned()),
        ],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  azure.token") && stdout.contains("managed_identity"),
        "{stdout}"
    );

    // AKS workload identity: AZURE_FEDERATED_TOKEN_FILE in the environment.
    let token_file = dir.path().join("azure-identity-token");
    let token = azure
        .mint_federated_token("system:serviceaccount:marketlink:marketlink", 3600)
        .unwrap();
    std::fs::write(&token_file, token).unwrap();
    let out = doctor(
        azure_doctor_config(&azure, &ca, "kind = \"workload_identity\""),
        vec![(
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        )],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("federated token file from $AZURE_FEDERATED_TOKEN_FILE")
            && stdout.contains("ok    azure.token"),
        "{stdout}"
    );

    // The client secret: named as a key, never shown.
    let secret = azure.config().publisher_app_secret.expose().to_owned();
    let out = doctor(
        azure_doctor_config(&azure, &ca, "kind = \"client_secret\"").replace(
            "[azure.credential]",
            &format!("client_secret = \"{secret}\"\n[azure.credential]"),
        ),
        vec![],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("client_secret of app") && stdout.contains("(from azure.client_secret)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok    azure.token"), "{stdout}");
    assert!(!stdout.contains(&secret), "{stdout}");
    azure.shutdown().await;
    shutdown.cancel();
}
