//! Helpers to read request members, with the errors AWS answers for missing or mistyped ones.

use serde_json::Value;

use super::wire::AwsError;

pub fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, AwsError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AwsError::serialization(format!("{key} must be a string"))),
    }
}

pub fn req_str<'a>(v: &'a Value, key: &str, validation_code: &str) -> Result<&'a str, AwsError> {
    opt_str(v, key)?.ok_or_else(|| {
        AwsError::bad_request(
            validation_code,
            format!("1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

pub fn opt_i64(v: &Value, key: &str) -> Result<Option<i64>, AwsError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| AwsError::serialization(format!("{key} must be an integer"))),
        Some(_) => Err(AwsError::serialization(format!("{key} must be a number"))),
    }
}
