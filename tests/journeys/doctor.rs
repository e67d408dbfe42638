//! `marketlink doctor` against the sandboxes: a good configuration, and broken ones whose
//! failures name the cause.

use marketlink_cli::doctor::{self, DoctorReport};
use marketlink_core::DiagnosisStatus;
use marketlink_e2e::{start, start_gcp};

fn finding<'a>(report: &'a DoctorReport, check: &str) -> &'a marketlink_core::Diagnosis {
    report
        .findings
        .iter()
        .find(|d| d.check == check)
        .unwrap_or_else(|| panic!("no {check} finding in\n{}", report.render()))
}

fn assert_status(report: &DoctorReport, check: &str, status: DiagnosisStatus) {
    let d = finding(report, check);
    assert_eq!(
        d.status,
        status,
        "{check}: {}\n{}",
        d.detail,
        report.render()
    );
}

#[tokio::test]
async fn a_good_sandbox_configuration_passes() {
    // The demo's configuration, whose catalog lists the product on Google too.
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let report = doctor::check(&stack.config).await;
    assert!(!report.failed(), "{}", report.render());
    for check in [
        "database",
        "database.migrations",
        "server.healthz",
        "catalog",
        "aws.credentials",
        "aws.product.mlsandboxclassic0000000001",
        "aws.product.mlsandboxconcurrent0000002",
        "aws.agreements.mlsandboxclassic0000000001",
        "aws.agreements.mlsandboxconcurrent0000002",
        "aws.sqs.aws-mp-sns-notifications",
        "aws.sqs.aws-mp-eventbridge-events",
        "aws.eventbridge",
        "azure.credential",
        "azure.token",
        "azure.fulfillment_api",
        "azure.webhook_keys",
        "azure.sign_in",
        "gcp.credentials",
        "gcp.procurement",
        "gcp.signup_keys",
        "gcp.pubsub",
    ] {
        assert_status(&report, check, DiagnosisStatus::Ok);
    }
    // The sandbox runs on loopback http: allowed, with a warning; Google pushes only to https.
    assert_status(&report, "server.public_url", DiagnosisStatus::Warning);
    assert_status(&report, "gcp.push", DiagnosisStatus::Warning);
    // The URLs to paste into the consoles are printed.
    let landing = finding(&report, "aws.landing_url");
    assert!(
        landing
            .detail
            .starts_with(&format!("{}/aws/landing", stack.app_url)),
        "{}",
        landing.detail
    );
    assert!(
        finding(&report, "azure.endpoint.webhook")
            .detail
            .contains("/azure/webhook")
    );
}

#[tokio::test]
async fn broken_configurations_fail_and_name_the_cause() {
    let stack = start(|_| {}).await;

    // Wrong AWS secret key: the credentials fail, products are not blamed.
    let mut config = stack.config.clone();
    if let Some(creds) = config.aws.as_mut().and_then(|a| a.credentials.as_mut()) {
        creds.secret_access_key = marketlink_aws::Secret::new("not-the-secret");
    }
    let report = doctor::check(&config).await;
    assert!(report.failed());
    assert_status(&report, "aws.credentials", DiagnosisStatus::Failed);
    assert!(
        finding(&report, "aws.credentials")
            .detail
            .contains("secret_access_key is wrong"),
        "{}",
        report.render()
    );
    assert_status(
        &report,
        "aws.product.mlsandboxclassic0000000001",
        DiagnosisStatus::Warning,
    );

    // Unknown product code and an SQS queue that does not exist.
    let mut config = stack.config.clone();
    if let Some(aws) = config.aws.as_mut() {
        let mut extra = aws.products[0].clone();
        extra.product_code = "nosuchproduct".into();
        aws.products.push(extra);
        aws.sqs_queue_urls
            .push(format!("{}/111122223333/no-such-queue", stack.aws_url));
    }
    let report = doctor::check(&config).await;
    assert_status(&report, "aws.credentials", DiagnosisStatus::Ok);
    assert_status(
        &report,
        "aws.product.nosuchproduct",
        DiagnosisStatus::Failed,
    );
    assert!(
        finding(&report, "aws.product.nosuchproduct")
            .detail
            .contains("refused product code nosuchproduct"),
        "{}",
        report.render()
    );
    assert_status(&report, "aws.sqs.no-such-queue", DiagnosisStatus::Failed);
    assert!(
        finding(&report, "aws.sqs.no-such-queue")
            .detail
            .contains("does not exist"),
        "{}",
        report.render()
    );
    // The catalog does not list the unknown product either.
    assert!(
        report
            .failures()
            .any(|d| d.check == "catalog" && d.detail.contains("nosuchproduct")),
        "{}",
        report.render()
    );

    // Wrong Azure client secret: no token, so the API is not checked.
    let mut config = stack.config.clone();
    if let Some(azure) = config.azure.as_mut() {
        azure.client_secret = marketlink_azure::Secret::new("wrong-secret");
    }
    let report = doctor::check(&config).await;
    assert_status(&report, "azure.token", DiagnosisStatus::Failed);
    assert!(
        finding(&report, "azure.token")
            .detail
            .contains("client secret of app"),
        "{}",
        report.render()
    );
    assert_status(&report, "azure.fulfillment_api", DiagnosisStatus::Warning);

    // A database nobody migrated.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = stack.config.clone();
    config.database.url = format!("sqlite:{}", dir.path().join("fresh.db").display());
    let report = doctor::check(&config).await;
    assert_status(&report, "database", DiagnosisStatus::Ok);
    assert_status(&report, "database.migrations", DiagnosisStatus::Failed);
    assert!(
        finding(&report, "database.migrations")
            .detail
            .contains("marketlink migrate"),
        "{}",
        report.render()
    );
}
