//! `marketlink doctor`: harmless reads of each Google surface the configuration names.

use marketlink_core::{Diagnosis, ProviderError};
use reqwest::Method;

use crate::GcpProvider;

fn finding(check: &str, result: Result<String, ProviderError>, fix: &str) -> Diagnosis {
    match result {
        Ok(detail) => Diagnosis::ok(check, detail),
        Err(ProviderError::Retryable { message, .. }) => {
            Diagnosis::warning(check, format!("{message}; could not be checked now"))
        }
        Err(e) => Diagnosis::failed(check, format!("{e}; {fix}")),
    }
}

impl GcpProvider {
    pub(crate) async fn diagnose_all(&self) -> Vec<Diagnosis> {
        let mut findings = Vec::new();
        findings.push(finding(
            "gcp.credentials",
            self.api
                .credentials
                .bearer()
                .await
                .map(|_| "the service account obtains tokens".into()),
            "set [gcp] credentials_file to the linked service account's key, or run with ADC",
        ));
        findings.push(finding(
            "gcp.procurement",
            self.procurement().probe().await.map(|_| {
                format!(
                    "Partner Procurement API answers for provider {}",
                    self.config.provider_id
                )
            }),
            "check [gcp] provider_id and that the service account is linked in Producer Portal",
        ));
        findings.push(finding(
            "gcp.signup_keys",
            self.signup_keys
                .fetch()
                .await
                .map(|keys| format!("{} sign-up keys at {}", keys.len(), self.signup_keys.url())),
            "check [gcp] signup_keys_url",
        ));
        if let Some(subscription) = &self.config.subscription {
            let url = format!(
                "{}/v1/{subscription}",
                self.config.pubsub_url.trim_end_matches('/')
            );
            findings.push(finding(
                "gcp.pubsub",
                self.api
                    .call(Method::GET, &url, None)
                    .await
                    .map(|_| format!("subscription {subscription} readable")),
                "check [gcp] subscription and the service account's roles/pubsub.subscriber",
            ));
        }
        match &self.config.push {
            Some(push) if !push.audience.starts_with("https://") => findings.push(Diagnosis::warning(
                "gcp.push",
                "[gcp.push] audience is not an https URL; Google pushes only to HTTPS endpoints",
            )),
            None if self.config.subscription.is_none() => findings.push(Diagnosis::failed(
                "gcp.notifications",
                "neither [gcp.push] nor [gcp] subscription is set: Google's messages would never arrive",
            )),
            _ => {}
        }
        findings
    }
}
