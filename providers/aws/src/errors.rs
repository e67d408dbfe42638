//! SDK errors → `ProviderError`, and the retry loop around every AWS call.

use std::{future::Future, time::Duration};

use aws_smithy_runtime_api::client::{orchestrator::HttpResponse, result::SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use marketlink_core::ProviderError;

/// What an AWS error means for us, decided on the error code (the same names across services).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsFailure {
    /// The exception name (`ThrottlingException`), or a transport label (`Timeout`, `Dispatch`).
    pub code: String,
    pub message: String,
    pub class: FailureClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// Throttling, 5xx, timeouts, connection failures.
    Retryable,
    /// Credentials, disabled API, unknown product: an operator must act.
    Configuration,
    /// Our credentials' security token has expired (`ExpiredToken`, or `ExpiredTokenException`
    /// answered 403 / about the security token): a credentials problem, never the buyer's.
    CredentialsExpired,
    InvalidToken,
    /// ResolveCustomer's modeled `ExpiredTokenException` (HTTP 400): the buyer's registration
    /// token. Any other operation's is about our credentials (see `into_provider_error`).
    ExpiredToken,
    NotFound,
    /// The request itself is refused (validation).
    Rejected,
}

const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "InternalServiceErrorException",
    "InternalServerException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

const CONFIGURATION_CODES: &[&str] = &[
    "DisabledApiException",
    "InvalidProductCodeException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDeniedException",
    "AccessDenied",
    "InvalidAccessKeyId",
    "UnknownOperationException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];

impl AwsFailure {
    pub(crate) fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match err {
            SdkError::ConstructionFailure(e) => Self {
                code: "ConstructionFailure".into(),
                message: format!("{e:?}"),
                class: FailureClass::Configuration,
            },
            SdkError::TimeoutError(_) => Self {
                code: "Timeout".into(),
                message: "the AWS call timed out".into(),
                class: FailureClass::Retryable,
            },
            SdkError::DispatchFailure(e) => Self {
                code: "DispatchFailure".into(),
                message: format!("cannot reach AWS: {e:?}"),
                class: FailureClass::Retryable,
            },
            SdkError::ResponseError(e) => Self {
                code: "ResponseError".into(),
                message: format!("unreadable AWS response: {e:?}"),
                class: FailureClass::Retryable,
            },
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let err = ctx.into_err();
                let code = err.code().unwrap_or("Unknown").to_owned();
                let message = err.message().unwrap_or_default().to_owned();
                Self::classify(code, message, status)
            }
            other => Self {
                code: "Unknown".into(),
                message: format!("{other:?}"),
                class: FailureClass::Retryable,
            },
        }
    }

    pub(crate) fn classify(code: String, message: String, status: u16) -> Self {
        let class = match code.as_str() {
            "InvalidTokenException" => FailureClass::InvalidToken,
            // The same name serves two errors: ResolveCustomer's registration token (modeled,
            // HTTP 400), and the security token of the request's credentials, which any AWS
            // service answers with 403 and "The security token included in the request is
            // expired" (query protocols, such as SQS's, spell it `ExpiredToken`).
            "ExpiredTokenException"
                if status != 403 && !message.to_ascii_lowercase().contains("security token") =>
            {
                FailureClass::ExpiredToken
            }
            "ExpiredTokenException" | "ExpiredToken" => FailureClass::CredentialsExpired,
            "ResourceNotFoundException" => FailureClass::NotFound,
            c if RETRYABLE_CODES.contains(&c) => FailureClass::Retryable,
            c if CONFIGURATION_CODES.contains(&c) => FailureClass::Configuration,
            _ if status >= 500 || status == 429 => FailureClass::Retryable,
            _ if status == 401 || status == 403 => FailureClass::Configuration,
            _ => FailureClass::Rejected,
        };
        Self {
            code,
            message,
            class,
        }
    }

    pub(crate) fn is_retryable(&self) -> bool {
        self.class == FailureClass::Retryable
    }

    pub(crate) fn into_provider_error(self, operation: &str) -> ProviderError {
        // AWS's message may echo the registration token it was sent.
        let text = if self.message.is_empty() {
            format!("{operation}: {}", self.code)
        } else {
            let message = marketlink_core::redact::scrub_secrets(&self.message);
            format!("{operation}: {message} ({})", self.code)
        };
        match self.class {
            FailureClass::Retryable => ProviderError::retryable(text),
            FailureClass::Configuration => ProviderError::Configuration(text),
            FailureClass::InvalidToken => ProviderError::InvalidToken(text),
            // Only ResolveCustomer takes a registration token; from any other operation the
            // expired token can only be our credentials'.
            FailureClass::ExpiredToken if operation == "ResolveCustomer" => {
                ProviderError::ExpiredToken(text)
            }
            // An operator's problem, which the outbox and the flusher retry later: by then a
            // refreshing source (role, SSO, web identity) has handed the SDK's cache new
            // credentials; static session tokens must be replaced.
            FailureClass::ExpiredToken | FailureClass::CredentialsExpired => {
                ProviderError::Configuration(format!(
                    "{text}: the security token of marketlink's AWS credentials has expired; `marketlink doctor` names their source"
                ))
            }
            FailureClass::NotFound => ProviderError::NotFound(text),
            FailureClass::Rejected => ProviderError::Rejected {
                code: self.code,
                message: text,
            },
        }
    }
}

/// Exponential backoff retry policy for retryable failures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails for good, or the attempts are used up.
    pub(crate) async fn run<T, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, AwsFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsFailure>>,
    {
        let mut backoff = self.initial_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(f) if f.is_retryable() && attempt < self.max_attempts => {
                    tracing::warn!(
                        operation,
                        attempt,
                        code = %f.code,
                        "retryable AWS failure; backing off {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                Err(f) => return Err(f),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let c = |code: &str, status| AwsFailure::classify(code.into(), String::new(), status).class;
        assert_eq!(c("ThrottlingException", 400), FailureClass::Retryable);
        assert_eq!(c("RequestThrottled", 400), FailureClass::Retryable);
        assert_eq!(c("Whatever", 503), FailureClass::Retryable);
        assert_eq!(c("DisabledApiException", 400), FailureClass::Configuration);
        assert_eq!(c("InvalidTokenException", 400), FailureClass::InvalidToken);
        assert_eq!(c("ExpiredTokenException", 400), FailureClass::ExpiredToken);
        assert_eq!(
            c("TimestampOutOfBoundsException", 400),
            FailureClass::Rejected
        );
    }

    /// An expired security token (ours) never reads as the buyer's expired registration token.
    #[test]
    fn an_expired_security_token_is_a_credentials_problem() {
        let error = |code: &str, message: &str, status, operation| {
            AwsFailure::classify(code.into(), message.into(), status).into_provider_error(operation)
        };
        let registration = error(
            "ExpiredTokenException",
            "Registration token has expired",
            400,
            "ResolveCustomer",
        );
        assert!(matches!(registration, ProviderError::ExpiredToken(_)));
        // The generic security-token error, from ResolveCustomer itself...
        for (code, message, status) in [
            (
                "ExpiredTokenException",
                "The security token included in the request is expired",
                403,
            ),
            (
                "ExpiredTokenException",
                "The security token included in the request is expired",
                400,
            ),
            ("ExpiredTokenException", "", 403),
            (
                "ExpiredToken",
                "The security token included in the request is expired",
                403,
            ),
        ] {
            let e = error(code, message, status, "ResolveCustomer");
            assert!(
                matches!(&e, ProviderError::Configuration(text) if text.contains("credentials")),
                "{code} {status}: {e:?}"
            );
        }
        // ...and from any other operation, whatever its status.
        for operation in [
            "GetEntitlements",
            "BatchMeterUsage",
            "ReceiveMessage",
            "DescribeAgreement",
        ] {
            let e = error("ExpiredTokenException", "", 400, operation);
            assert!(
                matches!(e, ProviderError::Configuration(_)),
                "{operation}: {e:?}"
            );
            let e = error("ExpiredToken", "", 403, operation);
            assert!(
                matches!(e, ProviderError::Configuration(_)),
                "{operation}: {e:?}"
            );
        }
    }
    /// AWS's message may echo the registration token: it must not reach logs or pages.
    #[test]
    fn echoed_tokens_never_reach_error_messages() {
        let token = "sSoJdaDq3TQ82B0yS8dLPuK6+0x4T7JkYzMxQWRHb3h1UTU5ZmQ9PQ==";
        let error = AwsFailure::classify(
            "InvalidTokenException".into(),
            format!("Registration token {token} is invalid"),
            400,
        )
        .into_provider_error("ResolveCustomer")
        .to_string();
        assert!(!error.contains(token), "{error}");
        assert!(
            error.contains("Registration token <redacted> is invalid"),
            "{error}"
        );
    }
}
