//! Entry points for the fuzz targets (`fuzz/`, docs/security.md "Fuzzing"): the web front
//! end's parsers of outside input, reached without a server. Not an API: hidden from the docs
//! and free to change with the targets.

use marketlink_engine::metering::UsageInput;

/// The body of `POST /api/v1/usage`, as the handler reads it before the engine sees it.
pub fn usage_body(body: &[u8]) -> Result<Vec<UsageInput>, String> {
    crate::api::usage::parse(body).map_err(|e| e.to_string())
}

/// The fields of a landing request (query string or form body).
pub fn landing_fields(raw: &[u8]) -> Vec<(String, String)> {
    crate::buyer::landing::landing_fields(raw)
}
