//! Chrome DevTools Protocol commands, sent through chromedriver's `goog/cdp/execute` (a
//! vendor command, which fantoccini takes as a `WebDriverCompatibleCommand`). The journeys use
//! it for what WebDriver cannot do: full-page screenshots and a phone-sized viewport.

use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};

/// One DevTools command (`Domain.method`) with its parameters.
#[derive(Debug)]
pub struct DevTools {
    cmd: &'static str,
    params: Value,
}

impl DevTools {
    pub fn new(cmd: &'static str, params: Value) -> Self {
        Self { cmd, params }
    }
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}
