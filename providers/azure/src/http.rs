//! HTTP plumbing: the client (rustls, optional extra CA), error-body parsing and the mapping of
//! HTTP statuses to [`ProviderError`].

use std::time::Duration;

use marketlink_core::{ProviderError, redact::scrub_secrets};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;

/// Builds the HTTP client the adapter uses: rustls with the public web roots, plus `extra_ca`
/// (PEM, one or more certificates) when given, e.g. the sandbox's generated CA.
///
/// Redirects are not followed: none of the marketplace or Entra endpoints redirect an API call,
/// and following one would carry our bearer token elsewhere.
pub fn build_client(
    extra_ca: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("marketlink-azure/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            ProviderError::Configuration(format!("extra_ca_pem is not a PEM certificate: {e}"))
        })?;
        if certs.is_empty() {
            return Err(ProviderError::Configuration(
                "extra_ca_pem holds no certificate".into(),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ProviderError::Configuration(format!("building the HTTP client: {e}")))
}

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn read(response: reqwest::Response, what: &str) -> Result<Self, ProviderError> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(what, &e))?
            .to_vec();
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Deserializes a success body.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::retryable(format!(
                "{what}: unexpected response body ({e}): {}",
                snippet(&self.body)
            ))
        })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    /// `(code, message)` from any of the error shapes the APIs use.
    pub fn error_detail(&self) -> (Option<String>, String) {
        let body = self.json();
        let (code, message) = error_detail(&body);
        let message = message.map(|m| scrub_secrets(&m)).unwrap_or_else(|| {
            if self.body.is_empty() {
                self.status.to_string()
            } else {
                snippet(&self.body)
            }
        });
        (code, message)
    }

    /// Maps a non-success reply to the error it stands for.
    pub fn into_error(self, what: &str) -> ProviderError {
        status_error(what, &self)
    }
}

/// `(code, message)` from the Fulfillment (`{"error": {"code","message"}}`), Metering
/// (`{"code","message"}`) and Entra (`{"error","error_description"}`) error shapes.
pub(crate) fn error_detail(body: &Value) -> (Option<String>, Option<String>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    // The Fulfillment API's 403 is a bare JSON string.
    if let Value::String(message) = body {
        return (None, Some(message.clone()));
    }
    if let Some(inner) = body.get("error").filter(|e| e.is_object()) {
        return (text(inner.get("code")), text(inner.get("message")));
    }
    if let Some(error) = text(body.get("error")) {
        return (Some(error), text(body.get("error_description")));
    }
    let mut message = text(body.get("message"));
    if let Some(details) = body.get("details").and_then(Value::as_array) {
        let parts: Vec<String> = details
            .iter()
            .filter_map(|d| text(d.get("message")))
            .collect();
        if !parts.is_empty() {
            message = Some(match message {
                Some(m) => format!("{m} {}", parts.join(" ")),
                None => parts.join(" "),
            });
        }
    }
    (text(body.get("code")), message)
}

/// The first 300 characters of a body, for error messages, without the tokens it may echo.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = scrub_secrets(&String::from_utf8_lossy(body));
    let mut out: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Connection failures, timeouts and unreadable bodies: all worth retrying.
pub(crate) fn transport_error(what: &str, error: &reqwest::Error) -> ProviderError {
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ProviderError::Retryable {
        message,
        retry_after: None,
    }
}

/// The generic mapping of an unsuccessful status.
pub(crate) fn status_error(what: &str, reply: &Reply) -> ProviderError {
    let (code, message) = reply.error_detail();
    let status = reply.status;
    let text = format!("{what}: HTTP {}: {message}", status.as_u16());
    match status {
        // `ApiClient::send` has already retried with a freshly issued token.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Configuration(format!(
            "{text} (refused with a freshly issued token too: the Entra app's credentials or \
             permissions are wrong; check tenant_id, client_id and the credential ([azure.credential], \
             client_secret by default), that the app \
             has a service principal in its tenant, and that it is the app in the offer's \
             technical configuration in Partner Center)"
        )),
        StatusCode::NOT_FOUND => ProviderError::NotFound(text),
        StatusCode::CONFLICT => ProviderError::Rejected {
            code: "conflict".into(),
            message: text,
        },
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => ProviderError::Retryable {
            message: text,
            retry_after: reply.retry_after(),
        },
        s if s.is_server_error() => ProviderError::Retryable {
            message: text,
            retry_after: reply.retry_after(),
        },
        _ => ProviderError::Rejected {
            code: code.unwrap_or_else(|| "bad_request".into()),
            message: text,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_detail(&json!({"error": {"code": "Conflict", "message": "busy"}})),
            (Some("Conflict".into()), Some("busy".into()))
        );
        assert_eq!(
            error_detail(&json!({"error": "invalid_client", "error_description": "AADSTS7000215"})),
            (Some("invalid_client".into()), Some("AADSTS7000215".into()))
        );
        let metering = json!({"message": "One or more errors have occurred.", "code": "BadArgument",
            "details": [{"message": "The resourceId is required.", "code": "BadArgument"}]});
        let (code, message) = error_detail(&metering);
        assert_eq!(code.as_deref(), Some("BadArgument"));
        assert!(message.unwrap().contains("resourceId is required"));
        assert_eq!(
            error_detail(&json!(
                "The authorization token is invalid, expired, missing"
            )),
            (
                None,
                Some("The authorization token is invalid, expired, missing".into())
            )
        );
    }

    #[test]
    fn retry_after_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn statuses_map_to_errors() {
        let reply = |status: u16, body: Value| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: serde_json::to_vec(&body).unwrap(),
        };
        assert!(matches!(
            reply(403, json!({})).into_error("x"),
            ProviderError::Configuration(_)
        ));
        assert!(matches!(
            reply(404, json!({})).into_error("x"),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            reply(409, json!({})).into_error("x"),
            ProviderError::Rejected { code, .. } if code == "conflict"
        ));
        assert!(reply(503, json!({})).into_error("x").is_retryable());
        assert!(reply(429, json!({})).into_error("x").is_retryable());
        assert!(matches!(
            reply(400, json!({"error": {"code": "BadRequest", "message": "no"}})).into_error("x"),
            ProviderError::Rejected { code, .. } if code == "BadRequest"
        ));
    }
    /// Microsoft's error may echo the marketplace token it was sent: it must not reach our
    /// logs or pages.
    #[test]
    fn echoed_tokens_never_reach_error_messages() {
        let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eXoxMjMifQ.QUJDZGVmMTIzNDU2";
        let reply = |body: Vec<u8>| Reply {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            body,
        };
        let shaped = json!({"error": {"code": "BadRequest", "message": format!("Token {token} is invalid")}});
        let shaped = reply(serde_json::to_vec(&shaped).unwrap());
        let plain = reply(format!("<html>bad token {token}</html>").into_bytes());
        for reply in [shaped, plain] {
            let text = reply.into_error("resolve").to_string();
            assert!(
                !text.contains(token) && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
}
