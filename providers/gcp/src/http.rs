//! Calls to Google's JSON APIs: bearer token, bounded bodies, and Google's error shape
//! `{"error":{"code","message","status"}}` (gcp.md §3 [R], S15) mapped to `ProviderError`.

use std::time::Duration;

use marketlink_core::ProviderError;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{
    auth::Credentials,
    body::{read_bounded, transport_error},
};

#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) credentials: Credentials,
}

impl Api {
    /// One authenticated call; `{}` and an empty body read as `Value::Null`-free `{}`.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let token = self.credentials.bearer().await?;
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let bytes = read_bounded(response).await?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                ProviderError::retryable(format!("unreadable answer from {url}: {e}"))
            });
        }
        Err(status_error(status, &bytes, retry_after))
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// Google's error status name and message, if the body has its shape.
fn google_error(body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("status"), field("message"))
}

pub(crate) fn status_error(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let (code, message) = google_error(body);
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    match status {
        StatusCode::NOT_FOUND => ProviderError::NotFound(message),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Configuration(format!(
            "{message} (is the service account linked in Producer Portal, with the role this API needs?)"
        )),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => ProviderError::Retryable {
            message,
            retry_after,
        },
        s if s.is_server_error() => ProviderError::Retryable {
            message,
            retry_after,
        },
        _ => ProviderError::Rejected {
            code: if code.is_empty() {
                status.as_u16().to_string()
            } else {
                code
            },
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_map_to_the_engines_classes() {
        let body =
            br#"{"error":{"code":400,"message":"wrong state","status":"FAILED_PRECONDITION"}}"#;
        match status_error(StatusCode::BAD_REQUEST, body, None) {
            ProviderError::Rejected { code, message } => {
                assert_eq!(code, "FAILED_PRECONDITION");
                assert!(message.contains("wrong state"));
            }
            other => unreachable!("{other:?}"),
        }
        assert!(matches!(
            status_error(StatusCode::NOT_FOUND, b"", None),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, b"{}", None),
            ProviderError::Configuration(_)
        ));
        assert!(status_error(StatusCode::SERVICE_UNAVAILABLE, b"", None).is_retryable());
        assert!(status_error(StatusCode::TOO_MANY_REQUESTS, b"", None).is_retryable());
    }
}
