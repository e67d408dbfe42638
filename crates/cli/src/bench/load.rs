//! A small HTTP/1.1 load generator over keep-alive connections (wrk is not at hand, and a
//! benchmark in the repository must run anywhere the tests do): a closed loop for the most
//! requests per second N connections get, and an open loop at a fixed rate for latency.
//!
//! The open loop measures each request from the moment it was due, as wrk2 does, not from when
//! it was written: when the server stalls, the requests queued behind the stall are charged
//! for the wait (no coordinated omission). A dedicated thread hands out the due requests,
//! because tokio's timer only resolves whole milliseconds, coarser than the latencies measured.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::body::Body;
use hyper::{Request, StatusCode, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio::{sync::mpsc, task::JoinSet};

/// Largest answer read.
const BODY_LIMIT: usize = 1 << 20;

/// What to send, and whether an answer is the right one.
pub trait Requests: Send + Sync + 'static {
    /// The `i`th request.
    fn request(&self, i: u64) -> Request<Body>;
    /// Errs when `status` and `body` are not the answer the `i`th request must get.
    fn check(&self, i: u64, status: StatusCode, body: &[u8]) -> anyhow::Result<()>;
}

/// A closed loop's result: requests answered (all checked) over the time taken.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub requests: u64,
    pub elapsed: Duration,
}

impl Throughput {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// An open loop's result: every request's latency from when it was due (sorted), and how late
/// the generator itself handed requests out (sorted), to tell its own delay from the server's.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub latencies: Vec<Duration>,
    pub dispatch_lateness: Vec<Duration>,
    pub elapsed: Duration,
}

impl Latencies {
    /// The `p` quantile (0..=1) of the latencies.
    pub fn quantile(&self, p: f64) -> Duration {
        quantile(&self.latencies, p)
    }

    /// Requests answered per second over the run.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// The `p` quantile (0..=1) of sorted durations (nearest rank); zero when empty.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Body>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "load connection ended");
        }
    });
    Ok(sender)
}

async fn connect_all(
    addr: SocketAddr,
    connections: usize,
) -> anyhow::Result<Vec<SendRequest<Body>>> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        senders.push(connect(addr).await?);
    }
    Ok(senders)
}

/// Sends the `i`th request on `sender` and checks its answer.
async fn exchange(
    sender: &mut SendRequest<Body>,
    requests: &dyn Requests,
    i: u64,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let response = sender.send_request(requests.request(i)).await?;
    let status = response.status();
    let body = axum::body::to_bytes(Body::new(response.into_body()), BODY_LIMIT).await?;
    requests.check(i, status, &body)
}

/// Each of `connections` sends its next request as soon as the previous is answered, for
/// `duration`.
pub async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    requests: Arc<dyn Requests>,
) -> anyhow::Result<Throughput> {
    let senders = connect_all(addr, connections).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for mut sender in senders {
        let (requests, next) = (requests.clone(), next.clone());
        tasks.spawn(async move {
            let mut answered = 0u64;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                exchange(&mut sender, &*requests, i).await?;
                answered += 1;
            }
            anyhow::Ok(answered)
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        answered += done??;
    }
    Ok(Throughput {
        requests: answered,
        elapsed: started.elapsed(),
    })
}

/// `rate` requests per second for `duration`, spread over `connections` (request `i` on
/// connection `i % connections`, as wrk2 does); a connection still busy when its next request
/// is due sends it once free, and that wait counts in the request's latency.
pub async fn open_loop(
    addr: SocketAddr,
    connections: usize,
    rate: u64,
    duration: Duration,
    requests: Arc<dyn Requests>,
) -> anyhow::Result<Latencies> {
    anyhow::ensure!(rate > 0, "the rate must be positive");
    let senders = connect_all(addr, connections).await?;
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let mut queues = Vec::with_capacity(senders.len());
    let mut tasks = JoinSet::new();
    for mut sender in senders {
        let (queue, mut due) = mpsc::unbounded_channel::<(u64, Instant)>();
        queues.push(queue);
        let requests = requests.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while let Some((i, at)) = due.recv().await {
                exchange(&mut sender, &*requests, i).await?;
                latencies.push(at.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let dispatcher = std::thread::spawn(move || dispatch(&queues, total, interval, started));
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed();
    let mut dispatch_lateness = dispatcher
        .join()
        .map_err(|_| anyhow::anyhow!("the dispatcher thread panicked"))?;
    latencies.sort_unstable();
    dispatch_lateness.sort_unstable();
    Ok(Latencies {
        latencies,
        dispatch_lateness,
        elapsed,
    })
}

/// Hands request `i` to its connection when it is due (`started + i × interval`), sleeping in
/// between; returns how late each was handed out. Dropping the queues ends the connections.
#[expect(
    clippy::disallowed_methods,
    reason = "runs on a thread of its own, off the runtime; tokio's timer is too coarse here"
)]
fn dispatch(
    queues: &[mpsc::UnboundedSender<(u64, Instant)>],
    total: u64,
    interval: Duration,
    started: Instant,
) -> Vec<Duration> {
    let mut lateness = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        lateness.push(due.elapsed());
        // A closed queue means its connection failed; its task reports the error.
        let _sent = queues[(i % queues.len() as u64) as usize].send((i, due));
    }
    lateness
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&sorted, 0.0), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.99), Duration::ZERO);
    }
}
