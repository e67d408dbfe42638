//! AWS Signature Version 4 verification: the canonical request is recomputed from what arrived
//! and the HMAC-SHA256 signature chain is checked against the configured secret.

use axum::http::{HeaderMap, Method, StatusCode};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use sha2::{Digest, Sha256};
use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::FormatItem, macros::format_description,
};

use super::wire::AwsError;

type HmacSha256 = Hmac<Sha256>;

const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    /// Maximum allowed difference between `X-Amz-Date` and the sandbox clock; `None` disables.
    pub max_skew: Option<time::Duration>,
}

/// How an authentication failure is reported; SQS (awsQueryCompatible) uses other codes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ErrorFlavor {
    Marketplace,
    Sqs,
}

fn fail(flavor: ErrorFlavor, kind: Failure, message: String) -> AwsError {
    match (flavor, kind) {
        (ErrorFlavor::Marketplace, Failure::Missing) => {
            AwsError::bad_request("MissingAuthenticationTokenException", message)
        }
        (ErrorFlavor::Marketplace, Failure::UnknownKey) => {
            AwsError::bad_request("UnrecognizedClientException", message)
        }
        (ErrorFlavor::Marketplace, Failure::BadSignature) => {
            AwsError::new(StatusCode::FORBIDDEN, "InvalidSignatureException", message)
        }
        (ErrorFlavor::Sqs, Failure::Missing) => {
            AwsError::new(StatusCode::FORBIDDEN, "MissingAuthenticationToken", message)
                .with_query_error("MissingAuthenticationToken", "Sender")
        }
        (ErrorFlavor::Sqs, Failure::UnknownKey) => {
            AwsError::new(StatusCode::FORBIDDEN, "InvalidClientTokenId", message)
                .with_query_error("InvalidClientTokenId", "Sender")
        }
        (ErrorFlavor::Sqs, Failure::BadSignature) => {
            AwsError::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", message)
                .with_query_error("SignatureDoesNotMatch", "Sender")
        }
    }
}

#[derive(Clone, Copy)]
enum Failure {
    Missing,
    UnknownKey,
    BadSignature,
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let access_key_id = scope.next()?;
    let date = scope.next()?;
    let region = scope.next()?;
    let service = scope.next()?;
    if scope.next()? != "aws4_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    // Non-S3 services sign the already-encoded path encoded once more.
    path.split('/')
        .map(|seg| percent_encode(seg.as_bytes(), UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = form_pairs(q)
        .into_iter()
        .map(|(k, v)| {
            (
                percent_encode(k.as_bytes(), UNRESERVED).to_string(),
                percent_encode(v.as_bytes(), UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Verify a SigV4-signed request (Authorization header form).
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of an HTTP request, kept independent of axum types"
)]
pub fn verify(
    creds: &Credentials<'_>,
    flavor: ErrorFlavor,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), AwsError> {
    let bad_signature = |message: String| fail(flavor, Failure::BadSignature, message);
    let auth = check_credential(creds, flavor, headers)?;
    let amz_date = check_date_and_scope(creds, &auth, headers, now).map_err(bad_signature)?;
    let payload_hash = payload_hash(headers, body).map_err(bad_signature)?;
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.as_str(),
        canonical_uri(path),
        canonical_query(query),
        canonical_headers(&auth, headers),
        auth.signed_headers.join(";"),
        payload_hash
    );
    check_signature(creds, &auth, amz_date, &canonical_request).map_err(bad_signature)
}

/// The Authorization header, parsed, for the configured access key.
fn check_credential<'h>(
    creds: &Credentials<'_>,
    flavor: ErrorFlavor,
    headers: &'h HeaderMap,
) -> Result<Authorization<'h>, AwsError> {
    let Some(auth_value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(fail(
            flavor,
            Failure::Missing,
            "Missing Authentication Token".into(),
        ));
    };
    let Some(auth) = parse_authorization(auth_value) else {
        return Err(fail(
            flavor,
            Failure::BadSignature,
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters (AWS4-HMAC-SHA256).".into(),
        ));
    };
    if auth.access_key_id != creds.access_key_id {
        return Err(fail(
            flavor,
            Failure::UnknownKey,
            "The security token included in the request is invalid.".into(),
        ));
    }
    Ok(auth)
}

/// `X-Amz-Date` present, consistent with the credential scope and within the allowed skew;
/// the scope's region is ours and `host` is signed. Returns `X-Amz-Date`.
fn check_date_and_scope<'h>(
    creds: &Credentials<'_>,
    auth: &Authorization<'_>,
    headers: &'h HeaderMap,
    now: OffsetDateTime,
) -> Result<&'h str, String> {
    let Some(amz_date) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()) else {
        return Err(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        );
    };
    let Ok(signed_at) = PrimitiveDateTime::parse(amz_date, AMZ_DATE) else {
        return Err(format!("Invalid X-Amz-Date '{amz_date}'"));
    };
    let signed_at = signed_at.assume_utc();
    if !amz_date.starts_with(auth.date) {
        return Err("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP".into());
    }
    if auth.region != creds.region {
        return Err(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        ));
    }
    if let Some(max) = creds.max_skew
        && (now - signed_at).abs() > max
    {
        return Err(format!(
            "Signature expired: {amz_date} is now earlier or later than the allowed clock skew."
        ));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err("'Host' must be a signed header".into());
    }
    Ok(amz_date)
}

/// The signed headers, lower-case name and whitespace-folded values, one per line.
fn canonical_headers(auth: &Authorization<'_>, headers: &HeaderMap) -> String {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    canonical_headers
}

/// The body's SHA-256 (hex); a declared `x-amz-content-sha256` must match it.
fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let payload_hash = match headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h != "UNSIGNED-PAYLOAD" => h.to_owned(),
        _ => hex::encode(Sha256::digest(body)),
    };
    if payload_hash != hex::encode(Sha256::digest(body)) {
        return Err(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        );
    }
    Ok(payload_hash)
}

/// Derives the signing key from the secret and the scope and compares the signatures.
fn check_signature(
    creds: &Credentials<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    canonical_request: &str,
) -> Result<(), String> {
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        auth.date.as_bytes(),
    );
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let Ok(provided) = hex::decode(auth.signature) else {
        return Err("Malformed signature".into());
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(&k_signing) else {
        return Err("Malformed signature".into());
    };
    mac.update(string_to_sign.as_bytes());
    // Constant-time comparison.
    if mac.verify_slice(&provided).is_err() {
        return Err("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into());
    }
    Ok(())
}

pub fn format_amz_date(t: OffsetDateTime) -> String {
    t.format(AMZ_DATE).unwrap_or_default()
}
