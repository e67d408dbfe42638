//! The vendor API's OpenAPI 3.1 description, generated from the handlers' annotations
//! (`utoipa`), served at `/api/openapi.json`, browsable at `/api/docs`, committed as
//! `docs/openapi.json` and printed by `marketlink openapi`.
//!
//! The docs page is rendered here from the spec: no Swagger UI bundle to download at build
//! time and no CDN at run time, so it works on an air-gapped host.

use askama::Template;
use axum::{
    Json, Router,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{AppState, pages::Branding};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "marketlink vendor API",
        description = "What the vendor's product calls: entitlement checks, usage reports, \
                       tenants and API keys. Every call carries an API key \
                       (`Authorization: Bearer mlk_...` or `x-api-key`). Errors are \
                       `{\"error\": {\"code\", \"message\"}}` with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::api::usage::report,
        crate::api::entitlements::check,
        crate::api::entitlements::tenant_entitlements,
        crate::api::tenants::list,
        crate::api::tenants::one,
        crate::api::keys::list,
        crate::api::keys::create,
        crate::api::keys::revoke,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("api_key_header" = [])),
    tags(
        (name = "entitlements", description = "May a tenant use a feature? (scope `entitlements:read`)"),
        (name = "usage", description = "Metered usage in (scope `usage:write`)"),
        (name = "tenants", description = "The vendor's customer accounts (scope `admin`)"),
        (name = "api-keys", description = "The vendor's API keys (scope `admin`)"),
    ),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("mlk_<prefix>_<secret>")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

/// The generated description.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The description as committed in `docs/openapi.json`: pretty JSON and a final newline.
pub fn json() -> String {
    let mut text = spec()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
}

async fn openapi_json() -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(spec()),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct DocsPage {
    brand: Branding,
    title: String,
    description: String,
    version: String,
    operations: Vec<Operation>,
    schemas: Vec<SchemaDoc>,
}

struct Operation {
    method: String,
    path: String,
    anchor: String,
    summary: String,
    tag: String,
    parameters: Vec<Field>,
    request: Option<String>,
    responses: Vec<(String, String, Option<String>)>,
}

struct Field {
    name: String,
    kind: String,
    required: bool,
    description: String,
}

struct SchemaDoc {
    name: String,
    description: String,
    fields: Vec<Field>,
}

async fn docs_page(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match serde_json::to_value(spec()) {
        Ok(spec) => crate::pages::render(
            StatusCode::OK,
            &docs_from(&spec, state.settings.branding.clone()),
        ),
        Err(error) => {
            tracing::error!(%error, "cannot serialise the OpenAPI description");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// `#/components/schemas/Name` → `Name`; inline schemas by their type.
fn type_name(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let names: Vec<String> = options
                .iter()
                .map(type_name)
                .filter(|n| n != "null")
                .collect();
            return names.join(" | ");
        }
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .filter(|k| *k != "null")
            .collect::<Vec<_>>()
            .join(" | "),
        Some(kind) => text(kind),
        None => "any".into(),
    };
    match (kind.as_str(), schema.get("items"), schema.get("format")) {
        ("array", Some(items), _) => format!("array of {}", type_name(items)),
        (_, _, Some(format)) => format!("{kind} ({})", text(format)),
        _ => kind,
    }
}

fn docs_from(spec: &Value, brand: Branding) -> DocsPage {
    DocsPage {
        brand,
        title: text(&spec["info"]["title"]),
        description: text(&spec["info"]["description"]),
        version: text(&spec["info"]["version"]),
        operations: operations(spec),
        schemas: schemas(spec),
    }
}

/// Every operation, grouped by tag, then by path.
fn operations(spec: &Value) -> Vec<Operation> {
    let mut operations: Vec<Operation> = spec["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(path, item)| Some((path, item.as_object()?)))
        .flat_map(|(path, item)| {
            item.iter()
                .map(move |(method, op)| operation(path, method, op))
        })
        .collect();
    operations.sort_by(|a, b| (&a.tag, &a.path).cmp(&(&b.tag, &b.path)));
    operations
}

fn operation(path: &str, method: &str, op: &Value) -> Operation {
    let parameters = op["parameters"]
        .as_array()
        .map(|ps| ps.iter().map(parameter).collect())
        .unwrap_or_default();
    let request_schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let responses = op["responses"]
        .as_object()
        .map(|rs| {
            rs.iter()
                .map(|(status, r)| {
                    let schema = &r["content"]["application/json"]["schema"];
                    (
                        status.clone(),
                        text(&r["description"]),
                        schema.as_object().map(|_| type_name(schema)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Operation {
        method: method.to_uppercase(),
        anchor: format!("{method}-{path}").replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        path: path.to_owned(),
        summary: [text(&op["summary"]), text(&op["description"])]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        tag: op["tags"]
            .as_array()
            .and_then(|t| t.first())
            .map(text)
            .unwrap_or_default(),
        parameters,
        request: request_schema
            .as_object()
            .map(|_| type_name(request_schema)),
        responses,
    }
}

fn parameter(p: &Value) -> Field {
    Field {
        name: format!("{} ({})", text(&p["name"]), text(&p["in"])),
        kind: type_name(&p["schema"]),
        required: p["required"].as_bool().unwrap_or(false),
        description: text(&p["description"]),
    }
}

/// Every named schema with its fields.
fn schemas(spec: &Value) -> Vec<SchemaDoc> {
    spec["components"]["schemas"]
        .as_object()
        .map(|schemas| {
            schemas
                .iter()
                .map(|(name, schema)| SchemaDoc {
                    name: name.clone(),
                    description: text(&schema["description"]),
                    fields: fields(schema),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields: Vec<Field> = schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(prop, s)| Field {
                    name: prop.clone(),
                    kind: type_name(s),
                    required: required.contains(&prop.as_str()),
                    description: text(&s["description"]),
                })
                .collect()
        })
        .unwrap_or_default();
    // Flattened and one-of schemas list their parts.
    for (key, name) in [("allOf", "(all of)"), ("oneOf", "(one of)")] {
        for part in schema[key].as_array().into_iter().flatten() {
            fields.push(Field {
                name: name.into(),
                kind: type_name(part),
                required: key == "allOf",
                description: text(&part["description"]),
            });
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_openapi_3_1_and_names_every_operation() {
        let spec = serde_json::to_value(spec()).unwrap();
        assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
        let page = docs_from(&spec, Branding::default());
        assert_eq!(page.operations.len(), 8);
        assert!(page.schemas.iter().any(|s| s.name == "ErrorBody"));
        let html = page.render().unwrap();
        assert!(html.contains("/api/v1/tenants/{id}/entitlements"), "{html}");
        assert!(html.contains("DELETE"));
    }

    /// `UsageAccepted` describes the engine's `IngestOutcome`, which the usage API answers
    /// with: the same fields, all required.
    #[test]
    fn the_usage_answer_schema_matches_what_is_sent() {
        let sent = serde_json::to_value(marketlink_store::IngestOutcome::default()).unwrap();
        let mut sent: Vec<&String> = sent.as_object().unwrap().keys().collect();
        sent.sort();
        let spec = serde_json::to_value(spec()).unwrap();
        let schema = &spec["components"]["schemas"]["UsageAccepted"];
        let mut described: Vec<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        described.sort();
        assert_eq!(sent, described);
        assert_eq!(schema["required"].as_array().unwrap().len(), sent.len());
    }

    /// `docs/openapi.json` is what the code generates, so the published contract cannot
    /// drift from the routes.
    #[test]
    fn the_committed_openapi_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == json(),
            "docs/openapi.json is out of date with the code: run \
             `cargo run -- openapi > docs/openapi.json` and commit it"
        );
    }

    /// Every `/api/v1` route the source mounts is documented: a string literal `"/api/v1/..."`
    /// in web/src that is not a path of the spec fails here (so a new route needs
    /// `#[utoipa::path]` and an entry in [`ApiDoc`]). The journeys check the other way: every
    /// documented operation is routed.
    #[test]
    fn every_api_route_in_the_source_is_in_the_spec() {
        let spec = spec();
        let documented: Vec<&String> = spec.paths.paths.keys().collect();
        let needle = format!("{}/api/v1/", '"');
        let mut found = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let source = std::fs::read_to_string(&path).unwrap();
                    let code = source.lines().filter(|l| !l.trim_start().starts_with("//"));
                    for line in code {
                        let mut rest = line;
                        while let Some(at) = rest.find(&needle) {
                            let literal = &rest[at + 1..];
                            let end = literal.find('"').unwrap_or(literal.len());
                            found.push((path.display().to_string(), literal[..end].to_owned()));
                            rest = &literal[end..];
                        }
                    }
                }
            }
        }
        // The scan must see the routes at all (each path is also in its `#[utoipa::path]`).
        assert!(found.len() >= 12, "{found:?}");
        for (file, route) in &found {
            assert!(
                documented.contains(&route),
                "{file} mounts {route}, which docs/openapi.json does not describe: annotate \
                 the handler with #[utoipa::path] and list it in openapi::ApiDoc"
            );
        }
    }
}
