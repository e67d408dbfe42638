//! The marketlink processes under test: each `marketlink serve` is a child process on its own
//! port, killed with SIGKILL and started again on the same port and database. A small TCP
//! balancer in front of them is the one address buyers, the vendor's product and the
//! marketplaces use, as a load balancer would be: it skips a replica that does not accept.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The `marketlink` binary: `MARKETLINK_BIN`, or the one cargo built next to this test
/// (`cargo test --workspace` and `scripts/test` build it with the CLI's own tests).
pub fn marketlink_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MARKETLINK_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/soak-<hash> → target/<profile>/marketlink
    let built = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("marketlink"))
        .expect("target directory");
    assert!(
        built.exists(),
        "no marketlink binary at {} (build it: cargo build -p marketlink-cli, or set MARKETLINK_BIN)",
        built.display()
    );
    built
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One replica: its port, configuration, and the running child if any.
struct Replica {
    port: u16,
    child: Option<Child>,
}

/// The replicas of one deployment, all on one configuration file and database.
pub struct Fleet {
    dir: PathBuf,
    config_file: PathBuf,
    env: Mutex<Vec<(String, String)>>,
    replicas: Mutex<Vec<Replica>>,
    pub kills: AtomicUsize,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        for replica in replicas.iter_mut() {
            if let Some(mut child) = replica.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Fleet {
    /// `count` replicas of `marketlink serve` with `config` (TOML) and `env` (MARKETLINK_*
    /// overrides shared by all), not started yet.
    pub fn new(dir: &Path, count: usize, config: &str, env: Vec<(String, String)>) -> Self {
        let config_file = dir.join("marketlink.toml");
        std::fs::write(&config_file, config).expect("write configuration");
        let replicas = (0..count)
            .map(|_| Replica {
                port: free_port(),
                child: None,
            })
            .collect();
        Self {
            dir: dir.to_owned(),
            config_file,
            env: Mutex::new(env),
            replicas: Mutex::new(replicas),
            kills: AtomicUsize::new(0),
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        self.lock().iter().map(|r| r.port).collect()
    }

    /// The running replicas' process ids (benches/replicas.rs reads their CPU time).
    #[allow(dead_code)] // not used by the soak
    pub fn pids(&self) -> Vec<u32> {
        self.lock()
            .iter()
            .filter_map(|r| r.child.as_ref().map(Child::id))
            .collect()
    }

    /// Sets `key` for the replicas started from now on (a configuration change that
    /// reaches each replica at its next start, as in a rolling deployment).
    pub fn set_env(&self, key: &str, value: &str) {
        let mut env = self.env.lock().unwrap_or_else(|p| p.into_inner());
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Replica>> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts replica `index` (a no-op when it runs) and waits until it answers `/readyz`.
    pub async fn start(&self, index: usize) {
        let port = {
            let mut replicas = self.lock();
            let replica = &mut replicas[index];
            if replica.child.is_some() {
                return;
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("replica-{index}.log")))
                .expect("replica log");
            let mut command = Command::new(marketlink_binary());
            command
                .current_dir(&self.dir)
                .args(["serve", "--config"])
                .arg(&self.config_file)
                .env_remove("MARKETLINK_CONFIG")
                // Ours, not the server's: it refuses unknown `MARKETLINK_*` variables.
                .env_remove("MARKETLINK_BIN")
                .env("RUST_LOG", "warn")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", self.dir.join("no-aws-config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    self.dir.join("no-aws-credentials"),
                )
                .env(
                    "MARKETLINK_SERVER__BIND",
                    format!("127.0.0.1:{}", replica.port),
                )
                .envs(self.env.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .stdout(Stdio::null())
                .stderr(log);
            replica.child = Some(command.spawn().expect("spawn marketlink"));
            replica.port
        };
        assert!(
            wait_ready(port).await,
            "replica {index} on port {port} did not become ready:\n{}",
            self.log_tail(index)
        );
    }

    /// SIGKILL to replica `index`, then reaped: nothing it held in memory survives.
    pub fn kill(&self, index: usize) -> bool {
        let mut replicas = self.lock();
        let Some(mut child) = replicas[index].child.take() else {
            return false;
        };
        let _ = child.kill();
        let _ = child.wait();
        self.kills.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The last lines replica `index` wrote to its log (for a failure's message).
    pub fn log_tail(&self, index: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("replica-{index}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Whether `127.0.0.1:port` answers `/readyz` with 200 within 60 s (a loaded machine).
async fn wait_ready(port: u16) -> bool {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback TCP balancer: each connection goes to the next replica that accepts it.
pub struct Balancer {
    stop: CancellationToken,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Balancer {
    /// Listens on `listener` and forwards to `ports`, round robin.
    pub fn start(listener: TcpListener, ports: Vec<u16>) -> Self {
        let stop = CancellationToken::new();
        let next = Arc::new(AtomicUsize::new(0));
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (inbound, _) = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                let (ports, next, token) = (ports.clone(), next.clone(), token.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for offset in 0..ports.len() {
                        let port = ports[(first + offset) % ports.len()];
                        if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await {
                            let mut inbound = inbound;
                            tokio::select! {
                                () = token.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream) => {}
                            }
                            return;
                        }
                    }
                    // No replica up: the connection closes unanswered, as behind a real
                    // balancer with no healthy target; the sender retries.
                });
            }
        });
        Self { stop }
    }
}
