//! A loopback TCP proxy between marketlink and the shared PostgreSQL test server, with a plug:
//! pulled, it cuts every open connection and drops new ones, as a database restart or a
//! network partition would, without disturbing the server other tests use.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct DbProxy {
    /// `host:port` of the proxy, to put in a database URL in place of the server's.
    pub addr: String,
    unplugged: Arc<AtomicBool>,
    /// Cancelled to cut the connections open now; replaced on each unplug.
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().expect("proxy lock").cancel();
    }
}

impl DbProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let proxy = Self {
            addr,
            unplugged: Arc::default(),
            cut: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (unplugged, cut, stop) = (
            proxy.unplugged.clone(),
            proxy.cut.clone(),
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
                if unplugged.load(Ordering::SeqCst) {
                    // Closed at once: the client sees the connection go before any answer.
                    drop(client);
                    continue;
                }
                let token = cut.lock().expect("proxy lock").clone();
                tokio::spawn(forward(client, upstream.clone(), token));
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
        self.unplugged.store(true, Ordering::SeqCst);
        let mut cut = self.cut.lock().expect("proxy lock");
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn plug(&self) {
        self.unplugged.store(false, Ordering::SeqCst);
    }
}

async fn forward(mut client: TcpStream, upstream: String, cut: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        () = cut.cancelled() => {}
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
