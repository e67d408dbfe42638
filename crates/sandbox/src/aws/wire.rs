//! Wire formats: awsJson 1.0/1.1 and Smithy RPC v2 CBOR, and the AWS error envelope.
//!
//! Handlers work on `serde_json::Value` in both directions. CBOR requests are decoded into the
//! same JSON tree (tag-1 timestamps become epoch-second numbers); CBOR responses are encoded from
//! it, with the members whose model type is `timestamp` written as tag 1 + float, as the
//! Smithy RPC v2 CBOR specification requires. Null members are omitted.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use minicbor::{
    Decoder, Encoder,
    data::{Tag, Type},
};
use serde_json::{Map, Number, Value};

/// The protocol a request arrived in; the response (and its errors) go back in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    AwsJson10,
    AwsJson11,
    RpcV2Cbor,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::AwsJson10 => "application/x-amz-json-1.0",
            Protocol::AwsJson11 => "application/x-amz-json-1.1",
            Protocol::RpcV2Cbor => "application/cbor",
        }
    }
}

/// An error in the AWS shape: `__type` code, message, HTTP status, and for SQS (awsQueryCompatible)
/// the `x-amzn-query-error` code.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub query_error: Option<String>,
    /// Further members of the error structure (the Agreement API's ValidationException has
    /// `reason` and `fields`).
    pub members: Map<String, Value>,
}

impl AwsError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            query_error: None,
            members: Map::new(),
        }
    }

    /// Adds a member of the error structure to the body.
    pub fn with_member(mut self, name: &str, value: Value) -> Self {
        self.members.insert(name.to_owned(), value);
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::bad_request("SerializationException", message)
    }

    pub fn with_query_error(mut self, code: &str, fault: &str) -> Self {
        self.query_error = Some(format!("{code};{fault}"));
        self
    }
}

/// Member names whose model type is `timestamp` in the outputs the sandbox produces (public
/// for the CBOR fuzz target, which checks what the encoding keeps).
pub const TIMESTAMP_MEMBERS: &[&str] = &[
    "Timestamp",
    "ExpirationDate",
    "startTime",
    "endTime",
    "acceptanceTime",
    "trialEndTime",
    "agreementStartDate",
    "agreementEndDate",
    "chargeDate",
    "lastUpdateTime",
    "freeTrialEndTime",
];

pub fn success(protocol: Protocol, request_id: &str, body: &Value) -> Response {
    let bytes = match protocol {
        Protocol::RpcV2Cbor => match json_to_cbor(body) {
            Ok(b) => b,
            Err(e) => {
                return error_response(
                    protocol,
                    request_id,
                    &AwsError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalServerException",
                        e,
                    ),
                );
            }
        },
        _ => body.to_string().into_bytes(),
    };
    respond(protocol, request_id, StatusCode::OK, bytes, &[])
}

pub fn error_response(protocol: Protocol, request_id: &str, err: &AwsError) -> Response {
    let mut extra: Vec<(&'static str, String)> = vec![("x-amzn-errortype", err.code.clone())];
    let type_value = if let Some(q) = &err.query_error {
        extra.push(("x-amzn-query-error", q.clone()));
        format!("com.amazonaws.sqs#{}", err.code)
    } else {
        err.code.clone()
    };
    let mut body = serde_json::json!({"__type": type_value, "message": err.message});
    if let Value::Object(map) = &mut body {
        map.extend(err.members.clone());
    }
    let bytes = match protocol {
        Protocol::RpcV2Cbor => json_to_cbor(&body).unwrap_or_default(),
        _ => body.to_string().into_bytes(),
    };
    respond(protocol, request_id, err.status, bytes, &extra)
}

fn respond(
    protocol: Protocol,
    request_id: &str,
    status: StatusCode,
    body: Vec<u8>,
    extra: &[(&'static str, String)],
) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(protocol.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-amzn-requestid"), v);
    }
    if protocol == Protocol::RpcV2Cbor {
        headers.insert(
            HeaderName::from_static("smithy-protocol"),
            HeaderValue::from_static("rpc-v2-cbor"),
        );
    }
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    resp
}

/// Parse a request body; an empty body is an empty structure.
pub fn parse_body(protocol: Protocol, body: &[u8]) -> Result<Value, AwsError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value = match protocol {
        Protocol::RpcV2Cbor => cbor_to_json(body).map_err(AwsError::serialization)?,
        _ => serde_json::from_slice(body)
            .map_err(|e| AwsError::serialization(format!("Invalid JSON request body: {e}")))?,
    };
    if !value.is_object() {
        return Err(AwsError::serialization("Request body must be a structure"));
    }
    Ok(value)
}

// ---------------------------------------------------------------- CBOR -> JSON

const MAX_DEPTH: usize = 32;

pub fn cbor_to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut d = Decoder::new(bytes);
    let v = decode_item(&mut d, 0)?;
    Ok(v)
}

fn err(e: minicbor::decode::Error) -> String {
    format!("Invalid CBOR request body: {e}")
}

fn decode_item(d: &mut Decoder<'_>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("CBOR nesting too deep".to_owned());
    }
    let ty = d.datatype().map_err(err)?;
    Ok(match ty {
        Type::Bool => Value::Bool(d.bool().map_err(err)?),
        Type::Null | Type::Undefined => {
            d.skip().map_err(err)?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64().map_err(err)?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::from(d.i64().map_err(err)?),
        Type::F32 | Type::F64 => {
            let f = d.f64().map_err(err)?;
            Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Type::String => Value::String(d.str().map_err(err)?.to_owned()),
        Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter().map_err(err)? {
                s.push_str(part.map_err(err)?);
            }
            Value::String(s)
        }
        Type::Array | Type::ArrayIndef => decode_array(d, depth)?,
        Type::Map | Type::MapIndef => decode_map(d, depth)?,
        Type::Tag => {
            let tag = d.tag().map_err(err)?;
            let inner = decode_item(d, depth + 1)?;
            if tag == Tag::new(1) {
                inner
            } else {
                return Err(format!("unsupported CBOR tag {tag:?}"));
            }
        }
        other => return Err(format!("unsupported CBOR item {other}")),
    })
}

/// Calls `item` once per element of a definite or indefinite-length array or map.
fn for_each_entry(
    d: &mut Decoder<'_>,
    len: Option<u64>,
    mut item: impl FnMut(&mut Decoder<'_>) -> Result<(), String>,
) -> Result<(), String> {
    match len {
        Some(n) => {
            for _ in 0..n {
                item(d)?;
            }
        }
        None => loop {
            if d.datatype().map_err(err)? == Type::Break {
                d.skip().map_err(err)?;
                break;
            }
            item(d)?;
        },
    }
    Ok(())
}

fn decode_array(d: &mut Decoder<'_>, depth: usize) -> Result<Value, String> {
    let mut items = Vec::new();
    let len = d.array().map_err(err)?;
    for_each_entry(d, len, |d| {
        items.push(decode_item(d, depth + 1)?);
        Ok(())
    })?;
    Ok(Value::Array(items))
}

fn decode_map(d: &mut Decoder<'_>, depth: usize) -> Result<Value, String> {
    let mut map = Map::new();
    let len = d.map().map_err(err)?;
    for_each_entry(d, len, |d| {
        let key = match decode_item(d, depth + 1)? {
            Value::String(s) => s,
            _ => return Err("CBOR map keys must be text strings".to_owned()),
        };
        let value = decode_item(d, depth + 1)?;
        map.insert(key, value);
        Ok(())
    })?;
    Ok(Value::Object(map))
}

// ---------------------------------------------------------------- JSON -> CBOR

pub fn json_to_cbor(value: &Value) -> Result<Vec<u8>, String> {
    let mut e = Encoder::new(Vec::new());
    encode_item(&mut e, value, false).map_err(|e| format!("CBOR encoding failed: {e}"))?;
    Ok(e.into_writer())
}

type EncResult = Result<(), minicbor::encode::Error<core::convert::Infallible>>;

fn encode_item(e: &mut Encoder<Vec<u8>>, value: &Value, timestamp: bool) -> EncResult {
    match value {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) => {
            if timestamp {
                e.tag(Tag::new(1))?;
                e.f64(n.as_f64().unwrap_or_default())?;
            } else if let Some(i) = n.as_i64() {
                e.i64(i)?;
            } else if let Some(u) = n.as_u64() {
                e.u64(u)?;
            } else {
                e.f64(n.as_f64().unwrap_or_default())?;
            }
        }
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                encode_item(e, item, false)?;
            }
        }
        Value::Object(map) => {
            let present: Vec<_> = map.iter().filter(|(_, v)| !v.is_null()).collect();
            e.map(present.len() as u64)?;
            for (k, v) in present {
                e.str(k)?;
                encode_item(e, v, TIMESTAMP_MEMBERS.contains(&k.as_str()))?;
            }
        }
    }
    Ok(())
}

/// Drop null members recursively (JSON responses omit absent members, like AWS).
pub fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_round_trip_with_timestamp_tag() {
        let v = serde_json::json!({"A": "x", "ExpirationDate": 1700000000.5, "N": 3, "L": [true, null], "Z": null});
        let bytes = json_to_cbor(&v).unwrap();
        let back = cbor_to_json(&bytes).unwrap();
        assert_eq!(back["A"], "x");
        assert_eq!(back["ExpirationDate"], 1700000000.5);
        assert_eq!(back["N"], 3);
        assert!(back.get("Z").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(cbor_to_json(&[0xff, 0x00, 0x13]).is_err());
        assert!(cbor_to_json(&[0xbf, 0x61]).is_err());
    }
}
