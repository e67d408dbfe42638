//! A loopback SMTP server that accepts every message and keeps it, so a journey can read the
//! mail marketlink sent and follow its link. It speaks just enough of RFC 5321 for a client
//! without TLS or authentication (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed, lines joined with `\n`.
    pub data: String,
}

impl Mail {
    /// The body as a mail client shows it: quoted-printable (RFC 2045 6.7) decoded.
    pub fn body(&self) -> String {
        let (headers, body) = self.data.split_once("\n\n").unwrap_or(("", &self.data));
        let quoted = headers
            .to_ascii_lowercase()
            .contains("content-transfer-encoding: quoted-printable");
        if !quoted {
            return body.to_owned();
        }
        let joined = body.replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'=', Some(byte)) => {
                    decoded.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    decoded.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&decoded).into_owned()
    }

    /// The first URL in the body that contains `part`, e.g. `/verify-email/`.
    pub fn link(&self, part: &str) -> Option<String> {
        self.body()
            .split_whitespace()
            .find(|word| word.starts_with("http") && word.contains(part))
            .map(str::to_owned)
    }
}

/// The running server; stops with the test's runtime.
pub struct SmtpSink {
    /// `smtp://127.0.0.1:<port>`, for `[email] smtp_url`.
    pub url: String,
    received: Arc<Mutex<Vec<Mail>>>,
    refusals: Arc<Refusals>,
}

/// Transient refusals (`451`) still to give, and how many were given.
#[derive(Default)]
struct Refusals {
    left: AtomicUsize,
    given: AtomicUsize,
}

impl Refusals {
    fn take(&self) -> bool {
        let took = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            self.given.fetch_add(1, Ordering::SeqCst);
        }
        took
    }
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::refusing(0).await
    }

    /// A sink that answers the first `count` messages `451` (try again later), as a mail
    /// server that is busy or greylisting does.
    pub async fn refusing(count: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP sink");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(Refusals {
            left: AtomicUsize::new(count),
            given: AtomicUsize::new(0),
        });
        let (kept, refuse) = (received.clone(), refusals.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, kept.clone(), refuse.clone()));
            }
        });
        Self {
            url,
            received,
            refusals,
        }
    }

    /// How many messages were answered `451`.
    pub fn refused(&self) -> usize {
        self.refusals.given.load(Ordering::SeqCst)
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<Mail> {
        self.received.lock().expect("sink").clone()
    }

    /// Messages received so far for `to`.
    pub fn messages_to(&self, to: &str) -> Vec<Mail> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            .collect()
    }

    /// Waits (30 s at most) until `count` messages for `to` have arrived; returns them.
    pub async fn wait_for(&self, to: &str, count: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.messages_to(to);
            if found.len() >= count {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} mail(s) to {to}; have {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Writes one reply line; false when the client is gone.
async fn say(write: &mut tokio::net::tcp::OwnedWriteHalf, reply: &str) -> bool {
    write
        .write_all(format!("{reply}\r\n").as_bytes())
        .await
        .is_ok()
}

/// The address inside `MAIL FROM:<a>` or `RCPT TO:<a>`.
fn address(argument: &str) -> String {
    let inner = argument
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(argument, |(address, _)| address);
    inner.trim().to_owned()
}

async fn session(stream: TcpStream, received: Arc<Mutex<Vec<Mail>>>, refusals: Arc<Refusals>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if !say(&mut write, "220 sink.test ESMTP ready").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250 sink.test"
        } else if upper.starts_with("MAIL FROM:") && refusals.take() {
            "451 4.3.0 busy, try again later"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&line["MAIL FROM:".len()..]);
            to.clear();
            "250 OK"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&line["RCPT TO:".len()..]));
            "250 OK"
        } else if upper == "DATA" {
            if !say(&mut write, "354 End data with <CR><LF>.<CR><LF>").await {
                return;
            }
            let mut data = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                // Dot-stuffing (RFC 5321 4.5.2): a leading dot was doubled by the client.
                data.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
            }
            received.lock().expect("sink").push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data: data.join("\n"),
            });
            "250 OK queued"
        } else if upper == "RSET" || upper == "NOOP" {
            "250 OK"
        } else if upper == "QUIT" {
            let _ = say(&mut write, "221 bye").await;
            return;
        } else {
            "502 command not implemented"
        };
        if !say(&mut write, reply).await {
            return;
        }
    }
}
