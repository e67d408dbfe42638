//! The server's connection limits, tried as an attacker would: headers sent slowly, a
//! kept-alive connection left idle, and more connections than allowed.

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use marketlink_web::{ServeOptions, serve};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

async fn server(options: ServeOptions) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(listener, router, std::future::pending(), options));
    address
}

/// Reads until the server closes the connection; how long that took, and what was read.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&seen).into_owned(),
    )
}

fn quick(max_connections: usize) -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_millis(500),
        max_connections,
        ..ServeOptions::default()
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let address = server(quick(16)).await;
    // Slowloris: a request line and one header, then a byte now and then, never the end.
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dribble = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    dribble.await;
    let (waited, _) = until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(waited < Duration::from_secs(3));

    // A served client that then sits idle is let go too.
    let mut idle = TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (waited, answer) = until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= Duration::from_millis(400),
        "kept alive for a while first ({waited:?})"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let address = server(ServeOptions {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 2,
        ..ServeOptions::default()
    })
    .await;
    let first = TcpStream::connect(address).await.unwrap();
    let _second = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(address).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (waited, answer) = until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(answer.is_empty(), "no answer beyond the limit: {answer}");
    assert!(waited < Duration::from_secs(1));

    // A slot freed is a slot taken again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(address).await.unwrap();
    fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, answer) = until_closed(&mut fourth, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
