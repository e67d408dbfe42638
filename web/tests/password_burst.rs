//! A burst of failed sign-ins, as an attacker would send them, must not grow the process: the
//! Argon2 checks run on a bounded set of reused memory blocks. Its own test binary, so the
//! resident size measured is this burst's alone.

use std::time::{Duration, Instant};

use marketlink_web::password;

/// Resident set size of this process, from /proc (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_sign_in_bursts_leave_memory_where_it_was() {
    const SLOTS: usize = 2;
    assert!(password::configure(SLOTS, Duration::from_secs(60)));
    let hash = password::hash("the real passphrase".into()).await.unwrap();
    // Warm: every slot has made its block once.
    let warm: Vec<_> = (0..SLOTS)
        .map(|_| tokio::spawn(password::verify("warm-up guess".into(), hash.clone())))
        .collect();
    for task in warm {
        assert!(!task.await.unwrap().unwrap());
    }
    let idle = rss_mib();
    let started = Instant::now();
    let mut peak: f64 = idle;
    for _round in 0..8 {
        let burst: Vec<_> = (0..16)
            .map(|i| tokio::spawn(password::verify(format!("guess {i}"), hash.clone())))
            .collect();
        for task in burst {
            assert!(!task.await.unwrap().unwrap(), "a wrong guess never matches");
        }
        peak = peak.max(rss_mib());
    }
    let after = rss_mib();
    println!(
        "128 failed checks 16 at a time in {:.1} s: RSS idle {idle:.0} MiB, peak {peak:.0} MiB, after {after:.0} MiB (limit idle + 16 MiB; ratio {:.2})",
        started.elapsed().as_secs_f64(),
        (after - idle) / 16.0
    );
    // Unbounded, each concurrent check kept its own 19 MiB: +300 MiB for 16 at a time.
    assert!(
        peak - idle < 16.0,
        "memory grew from {idle:.0} to {peak:.0} MiB during the burst"
    );
    assert!(
        after - idle < 16.0,
        "memory stayed at {after:.0} MiB after the burst (idle {idle:.0} MiB)"
    );
}
