//! Outages on demand (tests only): while an outage is on, the calls it matches get no real
//! answer, either a 503 or a connection closed without any answer (a reset as the client sees
//! it). Both sandboxes use this; each names what an outage matches (an AWS operation, a
//! Microsoft path suffix) and shapes its own 503.
//!
//! Sources: AWS lists `ServiceUnavailable` (503, "The request has failed due to a temporary
//! failure of the server") among the common errors of every API (e.g. AWS Marketplace Metering
//! Service API Reference, "Common Errors"). Microsoft's marketplace OpenAPI files list no 503;
//! a 503 from a service that is down is plain HTTP (RFC 9110 §15.6.4) and what Azure's front
//! doors answer during incidents [DERIVED]. Connection resets: the SDKs class them as transient
//! (AWS SDK "Retry behavior": transient errors include socket timeouts and connection
//! resets; Azure SDK design guidelines, "Retry policy": connection errors are retried along
//! with 408, 429, 500, 502, 503 and 504).

use std::sync::{Mutex, MutexGuard};

use axum::{body::Body, response::Response};
use time::{Duration, OffsetDateTime};

/// What the matched calls get during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// HTTP 503 with the service's error shape.
    Unavailable,
    /// The connection is closed without a byte of answer.
    Reset,
}

/// One outage: calls matching `matching` (`"*"`: every call) fail with `kind` until `until`
/// (sandbox clock) or until switched off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub matching: String,
    pub kind: OutageKind,
    pub until: Option<OffsetDateTime>,
}

/// The outages in force, and how many calls they turned away.
#[derive(Debug, Default)]
pub struct Outages {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    list: Vec<Outage>,
    refused: u64,
}

impl Outages {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts an outage of the calls `matching` selects, for `duration` or until [`Self::end`].
    pub fn start(
        &self,
        matching: &str,
        kind: OutageKind,
        duration: Option<Duration>,
        now: OffsetDateTime,
    ) {
        let until = duration.map(|d| now + d);
        self.lock().list.push(Outage {
            matching: matching.to_owned(),
            kind,
            until,
        });
    }

    /// Ends every outage: the service is back.
    pub fn end(&self) {
        self.lock().list.clear();
    }

    /// Calls turned away by outages so far (ended ones included).
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// The outage a call is caught by, if any (`is_match` decides what `matching` means);
    /// counts the call. Outages past their end are dropped.
    pub fn hit(&self, now: OffsetDateTime, is_match: impl Fn(&str) -> bool) -> Option<OutageKind> {
        let mut inner = self.lock();
        inner
            .list
            .retain(|o| o.until.is_none_or(|until| now < until));
        let kind = inner
            .list
            .iter()
            .find(|o| o.matching == "*" || is_match(&o.matching))?
            .kind;
        inner.refused += 1;
        Some(kind)
    }
}

/// A response that makes the server close the connection before anything is written: its body
/// fails at once, so hyper drops the connection with the head still unsent.
pub fn reset() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox outage: connection reset",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    response.extensions_mut().insert(WasReset);
    response
}

/// Marks a [`reset`] response, so a call log records "no answer" (status 0), not its 200.
#[derive(Debug, Clone, Copy)]
pub struct WasReset;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_match_count_and_expire() {
        let outages = Outages::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        outages.start(
            "BatchMeterUsage",
            OutageKind::Unavailable,
            Some(Duration::seconds(60)),
            t0,
        );
        let op = |name: &'static str| move |m: &str| m == name;
        assert_eq!(
            outages.hit(t0, op("BatchMeterUsage")),
            Some(OutageKind::Unavailable)
        );
        assert_eq!(outages.hit(t0, op("GetEntitlements")), None);
        assert_eq!(outages.refused(), 1);
        assert_eq!(
            outages.hit(t0 + Duration::seconds(60), op("BatchMeterUsage")),
            None
        );
        outages.start("*", OutageKind::Reset, None, t0);
        assert_eq!(outages.hit(t0, op("x")), Some(OutageKind::Reset));
        outages.end();
        assert_eq!(outages.hit(t0, op("x")), None);
    }
}

#[cfg(test)]
mod wire_tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A reset answers nothing at all: not even a status line reaches the client.
    #[tokio::test]
    async fn a_reset_closes_the_connection_without_an_answer() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route("/", axum::routing::get(|| async { super::reset() }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        // A reset may surface as an error or as an end of stream; either way, no bytes.
        let _ = socket.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        Ok(())
    }
}
