//! Our own chromedriver, one per browser: started on a free loopback port and killed when
//! dropped, so parallel tests never share a driver and nothing outlives a test.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

const INSTALL: &str = "chromedriver was not found. Install Chromium and its driver \
     (Debian/Ubuntu: `sudo apt-get install -y --no-install-recommends chromium chromium-driver`), \
     point CHROMEDRIVER at the binary, or set MARKETLINK_TEST_SKIP_BROWSER=1 to skip the browser tests.";

fn skip_requested() -> bool {
    std::env::var("MARKETLINK_TEST_SKIP_BROWSER").is_ok_and(|v| v == "1")
}

/// A running chromedriver (`$CHROMEDRIVER`, else `chromedriver` on the PATH); killed when dropped.
pub struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    /// Starts chromedriver and waits until it is ready, or `None` when it is missing and
    /// skipping was asked for.
    pub async fn start() -> Option<Self> {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = match Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if skip_requested() {
                    eprintln!("skipped: {program} not found and MARKETLINK_TEST_SKIP_BROWSER=1");
                    return None;
                }
                panic!("{INSTALL}");
            }
            Err(error) => panic!("cannot start {program}: {error}"),
        };
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if driver.ready().await {
                return Some(driver);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{program} did not become ready on port {port}");
    }

    /// Where WebDriver sessions are created.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether `GET /status` says a session can be created (thirtyfour only asks it within a
    /// session, and there is none yet).
    async fn ready(&self) -> bool {
        let Ok(response) = reqwest::get(format!("{}/status", self.url)).await else {
            return false;
        };
        response
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|status| status["value"]["ready"] == true)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // `/shutdown` quits every session's Chromium, then chromedriver itself; killing only
        // chromedriver would leave Chromium running. A session cannot be ended through its
        // client here: a test's runtime does not run while it drops its browser. So this runs
        // on a thread of its own, with a runtime of its own.
        let shutdown = format!("{}/shutdown", self.url);
        let child = &mut self.child;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async {
                    let _ = reqwest::Client::new()
                        .get(shutdown)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    for _ in 0..50 {
                        if child.try_wait().is_ok_and(|status| status.is_some()) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
            });
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
