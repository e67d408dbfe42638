//! Prometheus metrics at `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen through the `metrics` facade
//! (HTTP here, marketplace calls and metering in the engine, the Azure token cache in its
//! provider); backlog gauges are read from the database when Prometheus scrapes, so every
//! replica reports the shared queues as they are. Route labels are axum's matched templates
//! (`/api/v1/tenants/{id}`), never raw paths, to keep the number of series bounded.

use std::{
    collections::BTreeSet,
    sync::{Mutex, OnceLock},
    time::Instant,
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq;

use crate::AppState;

/// `[server] metrics` and `metrics_token`.
#[derive(Clone, Default)]
pub struct MetricsSettings {
    /// Serve `/metrics` (and record).
    pub enabled: bool,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Without a token: `true` lets anyone scrape (the demo), `false` (the default) refuses
    /// every scrape, since metrics name tenants' traffic and the deployment's internals.
    pub public: bool,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("public", &self.public)
            .finish()
    }
}

/// Latency buckets in seconds: the entitlement check answers in microseconds, marketplace
/// calls take up to tens of seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// `None` when another recorder was installed first, e.g. by an embedding program.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .and_then(|b| b.install_recorder());
            match recorder {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot install the metrics recorder; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "marketlink_http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "marketlink_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route template and status"
    );
    describe_counter!(
        "marketlink_marketplace_calls_total",
        "Marketplace API calls by provider, operation and outcome"
    );
    describe_histogram!(
        "marketlink_marketplace_call_duration_seconds",
        Unit::Seconds,
        "Marketplace API call latency by provider, operation and outcome"
    );
    describe_counter!(
        "marketlink_token_cache_total",
        "Marketplace API token lookups by provider and result (hit or miss)"
    );
    describe_counter!(
        "marketlink_usage_events_total",
        "Usage events received, by result (accepted or duplicate)"
    );
    describe_counter!(
        "marketlink_usage_hours_settled_total",
        "Hourly usage totals settled by the flusher, by outcome (delivered, mismatch, skipped, retried, dead)"
    );
    describe_gauge!(
        "marketlink_usage_hours",
        "Hourly usage totals in the database by state"
    );
    describe_gauge!(
        "marketlink_usage_due_hours",
        "Closed hours not yet delivered to the marketplace"
    );
    describe_gauge!(
        "marketlink_usage_oldest_due_age_seconds",
        Unit::Seconds,
        "Age of the oldest closed hour not yet delivered (0 when none)"
    );
    describe_gauge!(
        "marketlink_inbox_backlog",
        "Marketplace messages waiting to be processed"
    );
    describe_gauge!(
        "marketlink_inbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest waiting marketplace message (0 when none)"
    );
    describe_gauge!(
        "marketlink_outbox_backlog",
        "Outbox jobs by kind and state (pending or dead)"
    );
    describe_gauge!(
        "marketlink_database_up",
        "1 when the last scrape could read the backlogs from the database"
    );
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// Counts and times every request under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // The request's `http` span (web::router) gets the template too, for log queries.
    tracing::Span::current().record("route", route.as_str());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("marketlink_http_requests_total", &labels).increment(1);
    metrics::histogram!("marketlink_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

fn authorized(settings: &MetricsSettings, headers: &HeaderMap) -> bool {
    let Some(expected) = &settings.token else {
        return settings.public;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compare digests so the comparison takes the same time whatever the lengths.
    use sha2::{Digest, Sha256};
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    bool::from(a.ct_eq(&b))
}

async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let settings = &state.settings.metrics;
    if !settings.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !authorized(settings, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            if settings.token.is_some() {
                "send the metrics token: `Authorization: Bearer <token>`\n"
            } else {
                "metrics need a token: set [server] metrics_token (or metrics_public = true to let anyone scrape)\n"
            },
        )
            .into_response();
    }
    let Some(handle) = install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n",
        )
            .into_response();
    };
    let up = sample_backlogs(&state).await;
    metrics::gauge!("marketlink_database_up").set(if up { 1.0 } else { 0.0 });
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Outbox kinds reported before, so a kind whose backlog emptied reads 0 instead of keeping
/// its last value.
static OUTBOX_SERIES: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// Reads the queues' backlogs into gauges; false when the database did not answer.
async fn sample_backlogs(state: &AppState) -> bool {
    let now = state.now();
    let backlogs = state.engine.backlogs(now).await;
    let inbox = backlogs.inbox.map(record_inbox);
    let outbox = backlogs.outbox.map(record_outbox);
    let usage = backlogs.usage.map(|usage| record_usage(&usage, now));
    let mut up = true;
    for (what, result) in [("inbox", inbox), ("outbox", outbox), ("usage", usage)] {
        if let Err(error) = result {
            tracing::warn!(%error, "metrics: cannot read the {what} backlog");
            up = false;
        }
    }
    up
}

fn record_inbox((count, oldest): (i64, Option<time::Duration>)) {
    metrics::gauge!("marketlink_inbox_backlog").set(count as f64);
    metrics::gauge!("marketlink_inbox_oldest_age_seconds")
        .set(oldest.map_or(0.0, |age| age.as_seconds_f64().max(0.0)));
}

fn record_outbox(rows: Vec<(String, String, i64)>) {
    let mut seen = OUTBOX_SERIES.lock().unwrap_or_else(|p| p.into_inner());
    let current: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(k, s, _)| (k.clone(), s.clone()))
        .collect();
    for (kind, job_state) in seen.difference(&current) {
        metrics::gauge!("marketlink_outbox_backlog", "kind" => kind.clone(), "state" => job_state.clone())
            .set(0.0);
    }
    for (kind, job_state, count) in rows {
        metrics::gauge!("marketlink_outbox_backlog", "kind" => kind, "state" => job_state)
            .set(count as f64);
    }
    seen.extend(current);
}

fn record_usage(backlog: &marketlink_store::UsageBacklog, now: time::OffsetDateTime) {
    for hour_state in marketlink_store::UsageHourState::ALL {
        let name = hour_state.as_str();
        let count = backlog.by_state.get(name).copied().unwrap_or(0);
        metrics::gauge!("marketlink_usage_hours", "state" => name).set(count as f64);
    }
    metrics::gauge!("marketlink_usage_due_hours").set(backlog.due as f64);
    metrics::gauge!("marketlink_usage_oldest_due_age_seconds").set(
        backlog
            .oldest_due_hour
            .map_or(0.0, |hour| (now - hour).as_seconds_f64().max(0.0)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_and_never_printed() {
        let settings = MetricsSettings {
            enabled: true,
            token: Some("s3cret-scrape-token".into()),
            public: false,
        };
        let mut headers = HeaderMap::new();
        assert!(!authorized(&settings, &headers));
        headers.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(!authorized(&settings, &headers));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-scrape-token".parse().unwrap(),
        );
        assert!(authorized(&settings, &headers));
        assert!(!format!("{settings:?}").contains("s3cret"));
        // No token: closed unless the deployment says metrics are public.
        assert!(!authorized(&MetricsSettings::default(), &HeaderMap::new()));
        let public = MetricsSettings {
            public: true,
            ..MetricsSettings::default()
        };
        assert!(authorized(&public, &HeaderMap::new()));
    }
}
