//! What an operator would watch during the day: the server's resident memory, from
//! `/proc/<pid>/status` (sampled every 100 ms, and the kernel's high-water mark at the end),
//! and the usage backlog from `/metrics` (every 2 s, as a Prometheus scrape would).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

/// Memory and backlog seen so far, per phase of the run.
#[derive(Debug, Default, Clone)]
pub(super) struct Seen {
    /// (phase, peak VmRSS in kB) in the order the phases ran.
    pub phases: Vec<(String, u64)>,
    /// The kernel's peak resident set (`VmHWM`), kB: catches a peak between samples.
    pub high_water_kb: u64,
    pub samples: usize,
    /// The most closed hours waiting for delivery in one scrape
    /// (`marketlink_usage_due_hours`).
    pub due_hours_peak: f64,
    /// The most hourly totals held open in one scrape (`marketlink_usage_hours{state="open"}`).
    pub open_hours_peak: f64,
    pub scrapes: usize,
}

impl Seen {
    /// The larger of the sampled peak and the high-water mark, MB.
    pub(super) fn peak_mb(&self) -> f64 {
        let sampled = self.phases.iter().map(|(_, kb)| *kb).max().unwrap_or(0);
        sampled.max(self.high_water_kb) as f64 / 1024.0
    }

    pub(super) fn print(&self) {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(phase, kb)| format!("{phase} {:.1} MB", *kb as f64 / 1024.0))
            .collect();
        println!(
            "  server RSS peak:  {} ({} samples); VmHWM {:.1} MB",
            phases.join(", "),
            self.samples,
            self.high_water_kb as f64 / 1024.0
        );
        println!(
            "  /metrics:         due hours at most {:.0}, open hourly totals at most {:.0} ({} scrapes)",
            self.due_hours_peak, self.open_hours_peak, self.scrapes
        );
    }
}

/// Samples in the background until [`Watch::stop`].
pub(super) struct Watch {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Starts sampling process `pid` and scraping `url`'s `/metrics`; the first phase is
    /// "start-up".
    pub(super) fn start(pid: u32, url: &str) -> Self {
        let seen = Arc::new(Mutex::new(Seen {
            phases: vec![("start-up".into(), 0)],
            ..Seen::default()
        }));
        let stop = CancellationToken::new();
        let rss = tokio::spawn(sample_rss(pid, seen.clone(), stop.clone()));
        let metrics = tokio::spawn(scrape(format!("{url}/metrics"), seen.clone(), stop.clone()));
        Self {
            seen,
            stop,
            tasks: vec![rss, metrics],
        }
    }

    /// Peaks from now on count toward `phase`.
    pub(super) fn phase(&self, phase: &str) {
        lock(&self.seen).phases.push((phase.to_owned(), 0));
    }

    /// Stops sampling; what was seen, with the high-water mark read now.
    pub(super) async fn stop(self, pid: u32) -> Seen {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let mut seen = lock(&self.seen).clone();
        seen.high_water_kb = status_kb(pid, "VmHWM:").unwrap_or(0);
        seen
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn sample_rss(pid: u32, seen: Arc<Mutex<Seen>>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Some(kb) = status_kb(pid, "VmRSS:") {
            let mut seen = lock(&seen);
            seen.samples += 1;
            if let Some((_, peak)) = seen.phases.last_mut() {
                *peak = (*peak).max(kb);
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn scrape(url: String, seen: Arc<Mutex<Seen>>, stop: CancellationToken) {
    let http = reqwest::Client::new();
    while !stop.is_cancelled() {
        if let Ok(answer) = http.get(&url).send().await
            && let Ok(text) = answer.text().await
        {
            let due = gauge(&text, "marketlink_usage_due_hours ");
            let open = gauge(&text, "marketlink_usage_hours{state=\"open\"} ");
            let mut seen = lock(&seen);
            seen.scrapes += 1;
            seen.due_hours_peak = seen.due_hours_peak.max(due.unwrap_or(0.0));
            seen.open_hours_peak = seen.open_hours_peak.max(open.unwrap_or(0.0));
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// The value of the sample line starting with `prefix` (name and labels, then a space).
pub(super) fn gauge(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
}
