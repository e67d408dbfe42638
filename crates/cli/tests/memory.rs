//! The whole `marketlink serve` process under a burst of failed sign-ins, sent as an attacker
//! would with only the CSRF token of `GET /signin`: its resident size must stay near idle
//! during the burst and be back there after it. Before the Argon2 checks were bounded, 128
//! attempts 16 at a time took the process from 182 MB to 1.75 GB, kept after the burst.
//! Its own test binary, so nothing else runs in the measured process's way.

mod common;

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Server, free_port, marketlink, terminate, wait_ready};

const CONCURRENT: usize = 16;
const ROUNDS: usize = 8;
/// How far above idle the process may go during the burst, and where it must be after it.
const PEAK_LIMIT_MIB: f64 = 64.0;
const AFTER_LIMIT_MIB: f64 = 24.0;

/// Resident set size of process `pid`, from /proc (Linux).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The CSRF token in a page's sign-in form.
fn csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// One failed sign-in for a made-up account (a fresh email each time, so no per-account
/// slowdown hides the password check).
async fn failed_sign_in(client: &reqwest::Client, base: &str, token: &str, n: usize) {
    let email = format!("guess{n}@attacker.example");
    let password = format!("wrong password {n}");
    let form = [
        ("csrf", token),
        ("email", email.as_str()),
        ("password", password.as_str()),
    ];
    let response = client
        .post(format!("{base}/signin"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a wrong password is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_failed_sign_ins_leaves_the_process_near_idle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("marketlink.toml"),
        "[server]\npassword_hash_concurrency = 2\npassword_queue_wait_ms = 60000\n\
         [rate_limits]\nsign_in = { per_minute = 100000, burst = 10000 }\n",
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server(
        marketlink(dir.path())
            .args(["serve", "--config", "marketlink.toml"])
            .env("MARKETLINK_SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("MARKETLINK_SERVER__PUBLIC_URL", &base)
            .env("MARKETLINK_DATABASE__URL", "sqlite:marketlink.db")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    assert_eq!(wait_ready(&base).await.status(), 200);

    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let page = client.get(format!("{base}/signin")).send().await.unwrap();
    let token = csrf(&page.text().await.unwrap());
    // Warm up: both hashing slots have made their memory block once.
    tokio::join!(
        failed_sign_in(&client, &base, &token, 0),
        failed_sign_in(&client, &base, &token, 1)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(pid);

    let peak_kib = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak_kib = peak_kib.clone();
        tokio::spawn(async move {
            loop {
                peak_kib.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    for round in 0..ROUNDS {
        let burst = (0..CONCURRENT).map(|i| {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            let n = 2 + round * CONCURRENT + i;
            tokio::spawn(async move { failed_sign_in(&client, &base, &token, n).await })
        });
        for attempt in burst.collect::<Vec<_>>() {
            attempt.await.unwrap();
        }
    }
    let burst_secs = started.elapsed().as_secs_f64();
    sampler.abort();
    let peak = peak_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    // Give the allocator a moment to hand back what the burst's buffers took.
    let mut after = rss_mib(pid);
    let settle_until = Instant::now() + Duration::from_secs(10);
    while after - idle >= AFTER_LIMIT_MIB && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rss_mib(pid);
    }
    println!(
        "{} failed sign-ins {CONCURRENT} at a time over HTTP in {burst_secs:.1} s: process RSS idle \
         {idle:.0} MiB, peak {peak:.0} MiB (+{:.0}, limit +{PEAK_LIMIT_MIB:.0}, ratio {:.2}), after \
         {after:.0} MiB (+{:.0}, limit +{AFTER_LIMIT_MIB:.0}, ratio {:.2})",
        ROUNDS * CONCURRENT,
        peak - idle,
        (peak - idle) / PEAK_LIMIT_MIB,
        after - idle,
        (after - idle).max(0.0) / AFTER_LIMIT_MIB,
    );
    assert!(
        peak - idle < PEAK_LIMIT_MIB,
        "the process grew from {idle:.0} to {peak:.0} MiB during the burst"
    );
    assert!(
        after - idle < AFTER_LIMIT_MIB,
        "the process stayed at {after:.0} MiB after the burst (idle {idle:.0} MiB)"
    );
    assert!(terminate(&mut server).await.success());
}
