//! The process's log subscriber, formatted as `[log]` asks.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

pub fn init_tracing(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(log_layer(log.format, std::io::stdout))
        .try_init();
    if result.is_err() {
        eprintln!("marketlink: a tracing subscriber was already installed");
    }
}

/// The formatting layer for `[log] format`, writing to `writer`.
fn log_layer<S, W>(
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        // Every enclosing span's fields, so lines logged deep inside a request still carry
        // the `http` span's `request_id`.
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().with_writer(writer).boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(format, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("http", method = "GET", request_id = "req-42");
            let _request = request.enter();
            let inner = tracing::info_span!("apply", subscription = "s-1");
            let _inner = inner.enter();
            tracing::info!("deep inside the request");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn every_line_in_a_request_carries_its_request_id() {
        let json = lines_logged(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(line["fields"]["message"], "deep inside the request");
        assert_eq!(line["spans"][0]["request_id"], "req-42", "{json}");
        assert_eq!(line["span"]["subscription"], "s-1");
        // Without the terminal colour codes around field names.
        let mut text = String::new();
        let mut in_escape = false;
        for c in lines_logged(LogFormat::Pretty).chars() {
            match (in_escape, c) {
                (false, '\u{1b}') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, c) => text.push(c),
                (true, _) => {}
            }
        }
        assert!(text.contains("request_id=\"req-42\""), "{text}");
    }
}
