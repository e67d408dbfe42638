//! A loopback TCP proxy between marketlink and the shared PostgreSQL test server, with a plug:
//! pulled, it cuts every open connection and drops new ones, as a database restart or a
//! network partition would, without disturbing the server other tests use.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const PLUGGED: u8 = 0;
const UNPLUGGED: u8 = 1;
const STALLED: u8 = 2;

pub struct DbProxy {
    /// `host:port` of the proxy, to put in a database URL in place of the server's.
    pub addr: String,
    mode: Arc<AtomicU8>,
    /// Cancelled to cut the connections open now; replaced on each unplug.
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    /// Cancelled on plugging back in: stalled connections are closed then.
    release: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().expect("proxy lock").cancel();
        self.release.lock().expect("proxy lock").cancel();
    }
}

impl DbProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let proxy = Self {
            addr,
            mode: Arc::default(),
            cut: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
            release: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (mode, cut, release, stop) = (
            proxy.mode.clone(),
            proxy.cut.clone(),
            proxy.release.clone(),
            proxy.stop.clone(),
        );
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let release = release.lock().expect("proxy lock").clone();
                match mode.load(Ordering::SeqCst) {
                    // Closed at once: the client sees the connection go before any answer.
                    UNPLUGGED => drop(client),
                    // Held open, silent, as behind a partition, until plugged back in.
                    STALLED => {
                        tokio::spawn(async move {
                            release.cancelled().await;
                            drop(client);
                        });
                    }
                    _ => {
                        let cut = cut.lock().expect("proxy lock").clone();
                        let stall = Stall {
                            mode: mode.clone(),
                            release,
                        };
                        tokio::spawn(forward(client, upstream.clone(), cut, stall));
                    }
                }
            }
        });
        proxy
    }

    /// `url` (a `postgres://…@host:port/db` URL) pointed at this proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
        let (auth_host, path) = rest.split_once('/').expect("URL with a database");
        let auth = auth_host
            .rsplit_once('@')
            .map_or(String::new(), |(auth, _)| format!("{auth}@"));
        format!("{scheme}://{auth}{}/{path}", self.addr)
    }

    /// Cuts every open connection and refuses new ones until [`DbProxy::plug`].
    pub fn unplug(&self) {
        self.cut_with(UNPLUGGED);
    }

    /// Stops forwarding: open connections and new ones stay open but nothing passes either
    /// way, as when packets are dropped, until [`DbProxy::plug`] closes them.
    pub fn stall(&self) {
        self.cut_with(STALLED);
    }

    fn cut_with(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        let mut cut = self.cut.lock().expect("proxy lock");
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Lets connections through again (closing the stalled ones).
    pub fn plug(&self) {
        self.mode.store(PLUGGED, Ordering::SeqCst);
        let mut release = self.release.lock().expect("proxy lock");
        release.cancel();
        *release = CancellationToken::new();
    }
}

/// What a cut connection does when the proxy stalls rather than unplugs.
struct Stall {
    mode: Arc<AtomicU8>,
    release: CancellationToken,
}

async fn forward(mut client: TcpStream, upstream: String, cut: CancellationToken, stall: Stall) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        () = cut.cancelled() => {
            if stall.mode.load(Ordering::SeqCst) == STALLED {
                stall.release.cancelled().await;
            }
        }
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}

/// The `host:port` of a `postgres://…@host:port/db` URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or(rest);
    host.rsplit_once('@')
        .map_or(host, |(_, host)| host)
        .to_owned()
}
