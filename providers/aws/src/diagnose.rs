//! `marketlink doctor` for AWS: harmless calls that prove the credentials, product codes and
//! queues work, and plain words for what to fix when they do not.

use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::display::DisplayErrorContext;
use marketlink_core::Diagnosis;

use crate::{
    AwsProvider,
    agreement_status::search_filter,
    config::{NotificationMode, ProductConfig},
    credentials::{describe_source, is_static, secret_setting},
    errors::AwsFailure,
};

/// The credentials in use, as doctor names them: access key id and source, never the secret.
struct InUse {
    key_id: String,
    source: String,
    /// Where the secret is set (`aws.credentials.secret_access_key`, `AWS_SECRET_ACCESS_KEY`).
    secret: &'static str,
    /// Temporary credentials the SDK refreshes (role, SSO, web identity, container, instance).
    refreshed: bool,
}

/// Codes that mean AWS refused who we are, whichever API we called.
const UNKNOWN_KEY: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
];
const BAD_SECRET: &[&str] = &[
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
];
const EXPIRED: &[&str] = &["ExpiredToken", "ExpiredTokenException", "RequestExpired"];

/// Why AWS refused the credentials, in plain words; `None` when the failure is about something
/// else.
fn credential_problem(f: &AwsFailure, creds: &InUse) -> Option<String> {
    let code = f.code.as_str();
    let InUse {
        key_id,
        source,
        secret,
        ..
    } = creds;
    // A registration token cannot be in these calls: an expired token is ours.
    if UNKNOWN_KEY.contains(&code) {
        Some(format!(
            "AWS does not recognise access key {key_id} from {source} ({code}): check the key id, and that the key is active in IAM"
        ))
    } else if BAD_SECRET.contains(&code) {
        Some(format!(
            "AWS rejected the signature of access key {key_id} from {source} ({code}): {secret} is wrong (or the clock is far off)"
        ))
    } else if EXPIRED.contains(&code) && creds.refreshed {
        Some(format!(
            "AWS says the credentials from {source} (access key {key_id}) have expired ({code}): they should have been refreshed; check the machine's clock and that the source still hands out credentials"
        ))
    } else if EXPIRED.contains(&code) {
        Some(format!(
            "the session token of access key {key_id} from {source} has expired ({code}): replace the temporary keys, or use a source that refreshes itself (a role, SSO, web identity)"
        ))
    } else if code == "MissingAuthenticationTokenException" || code == "MissingAuthenticationToken"
    {
        Some(format!(
            "AWS saw no credentials on the request ({code}): check the [aws.credentials] section or the credential chain"
        ))
    } else {
        None
    }
}

fn unreachable(f: &AwsFailure, endpoint: Option<&str>) -> Option<String> {
    matches!(f.code.as_str(), "DispatchFailure" | "Timeout").then(|| {
        format!(
            "cannot reach AWS{} ({}): check the network, proxy and aws.endpoint_url",
            endpoint.map(|e| format!(" at {e}")).unwrap_or_default(),
            f.code
        )
    })
}

impl AwsProvider {
    pub(crate) async fn run_diagnosis(&self) -> Vec<Diagnosis> {
        let mut out = Vec::new();
        let creds = match self.credentials.provider.provide_credentials().await {
            Ok(found) => {
                let in_use = InUse {
                    key_id: found.access_key_id().to_owned(),
                    source: describe_source(&found),
                    secret: secret_setting(&found),
                    refreshed: !is_static(&found),
                };
                out.push(Diagnosis::ok(
                    "aws.credentials.source",
                    format!(
                        "credentials come from {}, access key {}",
                        in_use.source, in_use.key_id
                    ),
                ));
                in_use
            }
            Err(e) => {
                out.push(Diagnosis::failed(
                    "aws.credentials.source",
                    no_credentials(&e),
                ));
                // Without credentials every call below would fail for the same reason.
                out.extend(self.channel_diagnoses());
                return out;
            }
        };
        let endpoint = self.config.endpoint_url.as_deref();

        // Each product code costs one GetEntitlements call; the same calls prove the credentials.
        let mut probes = Vec::new();
        for product in &self.config.products {
            probes.push((product, self.probe_product(product).await));
        }
        let refused = probes.iter().find_map(|(_, r)| {
            r.as_ref()
                .err()
                .and_then(|f| credential_problem(f, &creds).or_else(|| unreachable(f, endpoint)))
        });
        let InUse { key_id, source, .. } = &creds;
        match &refused {
            Some(problem) => out.push(Diagnosis::failed("aws.credentials", problem.clone())),
            None if probes.iter().any(|(_, r)| r.is_ok()) => out.push(Diagnosis::ok(
                "aws.credentials",
                format!("AWS accepted access key {key_id} from {source}"),
            )),
            None => out.push(Diagnosis::warning(
                "aws.credentials",
                format!(
                    "access key {key_id} from {source} is in use, but no call succeeded to prove it (see the product checks)"
                ),
            )),
        }
        for (product, result) in &probes {
            out.push(self.product_diagnosis(product, result, refused.is_some()));
        }
        if refused.is_none() {
            for product in &self.config.products {
                out.push(self.agreement_diagnosis(product).await);
            }
        }

        for queue_url in &self.config.sqs_queue_urls {
            out.push(
                self.queue_diagnosis(queue_url, &creds, refused.is_some())
                    .await,
            );
        }
        out.extend(self.channel_diagnoses());
        out
    }

    /// GetEntitlements for the product, one result at most: read-only, free, and it fails with
    /// the codes that matter (unknown product, access denied, bad credentials).
    async fn probe_product(&self, product: &ProductConfig) -> Result<usize, AwsFailure> {
        self.entitlement
            .get_entitlements()
            .product_code(&product.product_code)
            .max_results(1)
            .send()
            .await
            .map(|page| page.entitlements().len())
            .map_err(AwsFailure::from_sdk)
    }

    /// SearchAgreements for the product, one result at most: reconcile reads agreement status
    /// this way, and without the permission it cannot see an AWS cancellation it missed.
    async fn agreement_diagnosis(&self, product: &ProductConfig) -> Diagnosis {
        let code = &product.product_code;
        let check = format!("aws.agreements.{code}");
        let Some(product_id) = product.product_id.as_deref() else {
            return Diagnosis::warning(
                check,
                format!(
                    "no product_id for {code}: reconcile reads agreement status one licence at a time, and not at all for classic subscriptions; copy the product id (prod-...) from the AMMP product page"
                ),
            );
        };
        let result = self
            .agreement
            .search_agreements()
            .catalog("AWSMarketplace")
            .filters(search_filter("PartyType", "Proposer"))
            .filters(search_filter("AgreementType", "PurchaseAgreement"))
            .filters(search_filter("ResourceIdentifier", product_id))
            .max_results(1)
            .send()
            .await
            .map_err(AwsFailure::from_sdk);
        match result {
            Ok(_) => Diagnosis::ok(
                check,
                format!(
                    "SearchAgreements answered for {product_id}: reconcile can read agreement status"
                ),
            ),
            Err(f) if matches!(f.code.as_str(), "AccessDeniedException" | "AccessDenied") => {
                Diagnosis::failed(
                    check,
                    format!(
                        "the IAM policy does not allow aws-marketplace:SearchAgreements ({}): reconcile cannot see AWS cancellations it missed; allow aws-marketplace:SearchAgreements and aws-marketplace:GetAgreementEntitlements (docs/listing-on-aws.md)",
                        f.message
                    ),
                )
            }
            Err(f) => Diagnosis::warning(
                check,
                format!(
                    "SearchAgreements for {product_id} failed ({}: {})",
                    f.code, f.message
                ),
            ),
        }
    }

    fn product_diagnosis(
        &self,
        product: &ProductConfig,
        result: &Result<usize, AwsFailure>,
        credentials_refused: bool,
    ) -> Diagnosis {
        let code = &product.product_code;
        let check = format!("aws.product.{code}");
        let f = match result {
            Ok(_) => {
                return Diagnosis::ok(
                    check,
                    format!("AWS Marketplace knows product code {code} (GetEntitlements answered)"),
                );
            }
            Err(f) => f,
        };
        if credentials_refused {
            return Diagnosis::warning(
                check,
                "not checked: AWS refused the credentials (see aws.credentials)",
            );
        }
        let detail = match f.code.as_str() {
            "InvalidProductCodeException" => format!(
                "AWS Marketplace does not know product code {code}: copy it from the AMMP product page (Products > SaaS > product > Product code)"
            ),
            "InvalidParameterException" if f.message.to_lowercase().contains("product") => {
                format!(
                    "AWS Marketplace refused product code {code} ({}): copy the product code from the AMMP product page",
                    f.message
                )
            }
            "AccessDeniedException" | "AccessDenied" => format!(
                "the IAM user may not read entitlements of {code} ({}): allow aws-marketplace:GetEntitlements, aws-marketplace:ResolveCustomer and aws-marketplace:BatchMeterUsage (policy AWSMarketplaceMeteringFullAccess), from the seller account that owns the product",
                f.message
            ),
            "DisabledApiException" => format!(
                "the Entitlement API is disabled for {code}: the listing may not be published yet, or belongs to another seller account"
            ),
            _ if f.is_retryable() => format!(
                "AWS did not answer for {code} ({}: {}): try again; if it persists check the region ({})",
                f.code, f.message, self.config.entitlement_region
            ),
            _ => format!(
                "GetEntitlements for {code} failed ({}: {})",
                f.code, f.message
            ),
        };
        Diagnosis::failed(check, detail)
    }

    async fn queue_diagnosis(
        &self,
        queue_url: &str,
        creds: &InUse,
        credentials_refused: bool,
    ) -> Diagnosis {
        let check = format!("aws.sqs.{}", queue_name(queue_url));
        let result = self
            .sqs
            .for_queue(queue_url)
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(AwsFailure::from_sdk);
        let f = match result {
            Ok(out) => {
                let count = |name: QueueAttributeName| {
                    out.attributes()
                        .and_then(|a| a.get(&name))
                        .cloned()
                        .unwrap_or_else(|| "?".into())
                };
                return Diagnosis::ok(
                    check,
                    format!(
                        "queue {queue_url} is readable: {} message(s) waiting, {} in flight",
                        count(QueueAttributeName::ApproximateNumberOfMessages),
                        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    ),
                );
            }
            Err(f) => f,
        };
        if credentials_refused && credential_problem(&f, creds).is_some() {
            return Diagnosis::warning(
                check,
                "not checked: AWS refused the credentials (see aws.credentials)",
            );
        }
        let detail = match f.code.as_str() {
            "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => format!(
                "queue {queue_url} does not exist: check aws.sqs_queue_urls (the URL names region, account and queue) and aws.region ({})",
                self.config.region
            ),
            "AccessDenied" | "AccessDeniedException" => format!(
                "the IAM user may not use queue {queue_url}: allow sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and sqs:GetQueueAttributes on it"
            ),
            _ => credential_problem(&f, creds)
                .or_else(|| unreachable(&f, Some(queue_url)))
                .unwrap_or_else(|| {
                    format!(
                        "GetQueueAttributes on {queue_url} failed ({}: {})",
                        f.code, f.message
                    )
                }),
        };
        Diagnosis::failed(check, detail)
    }

    /// How notifications reach us, from the configuration alone (AWS cannot tell us whether the
    /// marketplace's SNS topics have a confirmed subscription to our endpoint).
    fn channel_diagnoses(&self) -> Vec<Diagnosis> {
        let mut out = Vec::new();
        let has_queues = !self.config.sqs_queue_urls.is_empty();
        let sns_products: Vec<&str> = self
            .config
            .products
            .iter()
            .filter(|p| p.notification_mode == NotificationMode::Sns)
            .map(|p| p.product_code.as_str())
            .collect();
        if !sns_products.is_empty() {
            out.push(if has_queues {
                Diagnosis::ok(
                    "aws.sns",
                    format!(
                        "SNS notifications for {} are expected through the SQS queues above (subscribe each queue to the product's topics)",
                        sns_products.join(", ")
                    ),
                )
            } else {
                Diagnosis::warning(
                    "aws.sns",
                    format!(
                        "no SQS queue is configured, so SNS notifications for {} must come over HTTPS to <public_url>/aws/sns: subscribe that URL to the product's topics while marketlink is running; it confirms the subscription itself. An unconfirmed subscription loses every notification",
                        sns_products.join(", ")
                    ),
                )
            });
        }
        let eventbridge = self
            .config
            .products
            .iter()
            .any(|p| p.notification_mode == NotificationMode::Eventbridge);
        if eventbridge {
            out.push(match (&self.config.eventbridge_secret, has_queues) {
                (Some(_), _) => Diagnosis::ok(
                    "aws.eventbridge",
                    format!(
                        "EventBridge API destination secret is set: the connection must send it in header {}",
                        self.config.eventbridge_secret_header
                    ),
                ),
                (None, true) => Diagnosis::ok(
                    "aws.eventbridge",
                    "EventBridge events are expected through the SQS queues above (the /aws/events endpoint is off: no aws.eventbridge_secret)",
                ),
                (None, false) => Diagnosis::failed(
                    "aws.eventbridge",
                    "an EventBridge listing is configured but there is neither an SQS queue (aws.sqs_queue_urls) nor aws.eventbridge_secret for the /aws/events API destination: no agreement event can reach marketlink",
                ),
            });
        }
        out
    }
}

/// No source of the chain had credentials: say what was tried and what to set.
fn no_credentials(error: &CredentialsError) -> String {
    // "Not loaded" is every link saying it has nothing; any other error is a source that is
    // set up but failed (a web identity token STS refused, an SSO session expired).
    let why = match error {
        CredentialsError::CredentialsNotLoaded(_) => String::new(),
        other => format!(" ({})", DisplayErrorContext(other)),
    };
    format!(
        "no AWS credentials: aws.credentials is not set and the AWS credential chain found none{why}. \
         Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a shared profile \
         (AWS_PROFILE), web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN), run in an \
         ECS task or on EC2 with a role, or give static keys in [aws.credentials]"
    )
}

/// The queue's name, the last segment of its URL.
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}
