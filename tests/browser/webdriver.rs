//! A small W3C WebDriver client over the reqwest the harness already uses: it starts its own
//! chromedriver on a free port and drives one headless Chromium. The protocol is JSON over
//! HTTP and the tests need a dozen commands; a client crate would add two dozen crates (a
//! second `http`, ICU data) to the build for that.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `wait_for_text` and friends poll before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running chromedriver; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const INSTALL: &str = "chromedriver was not found. Install Chromium and its driver \
     (Debian/Ubuntu: `sudo apt-get install -y --no-install-recommends chromium chromium-driver`), \
     point CHROMEDRIVER at the binary, or set MARKETLINK_TEST_SKIP_BROWSER=1 to skip the browser tests.";

fn skip_requested() -> bool {
    std::env::var("MARKETLINK_TEST_SKIP_BROWSER").is_ok_and(|v| v == "1")
}

impl Driver {
    /// Starts chromedriver, or `None` when it is missing and skipping was asked for.
    async fn start() -> Option<Self> {
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
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = http.get(format!("{}/status", driver.url)).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return Some(driver);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{program} did not become ready on port {port}");
    }
}

/// One headless Chromium session. Screenshots go to `$MARKETLINK_TEST_SCREENSHOTS`, else
/// `<target dir>/test-output/screenshots`.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
    _driver: Driver,
}

#[derive(Clone)]
pub struct Element {
    id: String,
}

pub fn screenshot_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MARKETLINK_TEST_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-output/screenshots")
}

impl Browser {
    /// A fresh browser (own profile, no cookies), or `None` when the test should be skipped.
    pub async fn open() -> Option<Self> {
        let driver = Driver::start().await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ];
        // The Microsoft sandbox's pages are served with a certificate from a generated CA.
        args.push("--ignore-certificate-errors");
        let mut options = json!({ "args": args });
        if let Ok(binary) = std::env::var("CHROME") {
            options["binary"] = json!(binary);
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": options,
        }}});
        let created: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver answers JSON");
        let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| {
            panic!("Chromium did not start (is the `chromium` package installed?): {created}")
        });
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Some(Self {
            http,
            session: format!("{}/session/{id}", driver.url),
            shots,
            _driver: driver,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method.clone(), path, body).await {
            Ok(value) => value,
            Err((status, message)) => {
                panic!("WebDriver {method} {path} failed ({status}): {message}")
            }
        }
    }

    /// A WebDriver call whose failure (status and message) the caller handles.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (reqwest::StatusCode, Value)> {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let value: Value = response.json().await.expect("chromedriver answers JSON");
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err((status, value["value"]["message"].clone()))
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await;
    }

    /// The page's visible text; empty while the page is being replaced (a form just
    /// submitted: the body found may be gone by the time its text is asked for).
    pub async fn text(&self) -> String {
        let Some(body) = self.find_all("body").await.into_iter().next() else {
            return String::new();
        };
        match self
            .try_call(
                reqwest::Method::GET,
                &format!("/element/{}/text", body.id),
                None,
            )
            .await
        {
            Ok(text) => text.as_str().unwrap_or_default().to_owned(),
            Err((_, message)) if message.to_string().contains("stale element") => String::new(),
            Err((status, message)) => {
                panic!("WebDriver: reading the page's text failed ({status}): {message}")
            }
        }
    }

    pub async fn title(&self) -> String {
        self.get("/title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Elements matching a CSS selector, or an XPath when it starts with `/` (possibly none).
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        let using = if selector.starts_with('/') {
            "xpath"
        } else {
            "css selector"
        };
        let found = self
            .post("/elements", json!({ "using": using, "value": selector }))
            .await;
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element { id: id.to_owned() })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching a CSS selector, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                return element;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no element matches `{css}` on {}:\n{}",
                self.url().await,
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{}/click", element.id), json!({}))
            .await;
    }

    /// Clicks something that loads a new page (a link, a submit button) and waits until the new
    /// page has loaded, so the next step does not race the navigation.
    pub async fn submit(&self, selector: &str) {
        self.script("window.__marketlinkOldPage = true;", json!([]))
            .await;
        self.click(selector).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let loaded = self
                .script(
                    "return !window.__marketlinkOldPage && document.readyState === 'complete';",
                    json!([]),
                )
                .await;
            if loaded == true {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "clicking `{selector}` did not load a new page (still on {})",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the value of a field, as a person typing would.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{}/clear", element.id), json!({}))
            .await;
        self.post(
            &format!("/element/{}/value", element.id),
            json!({ "text": text }),
        )
        .await;
    }

    /// Picks the `<option>` with `value` in a `<select>`.
    pub async fn select(&self, select_css: &str, value: &str) {
        self.click(&format!("{select_css} option[value=\"{value}\"]"))
            .await;
    }

    /// The text of a label's field, checked to be labelled: fails when no `<label for>` names it.
    pub async fn fill_labelled(&self, label: &str, text: &str) {
        let script = "const want = arguments[0];\
            const label = [...document.querySelectorAll('label')].find(l => l.textContent.trim().startsWith(want));\
            return label && label.htmlFor ? '#' + CSS.escape(label.htmlFor) : null;";
        let css = self.script(script, json!([label])).await;
        let Some(css) = css.as_str() else {
            panic!("no <label for> named `{label}` on {}", self.url().await);
        };
        self.fill(css, text).await;
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Polls the page (reloading it when `reload`) until its text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, reload: bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for `{needle}` on {}:\n{text}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            if reload {
                self.refresh().await;
            }
        }
    }

    /// Chrome DevTools Protocol command through chromedriver.
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .await
    }

    /// Emulates a phone-sized viewport (`Some(width)`) or goes back to the window's size.
    pub async fn narrow(&self, width: Option<u32>) {
        match width {
            Some(width) => {
                self.cdp(
                    "Emulation.setDeviceMetricsOverride",
                    json!({ "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": true }),
                )
                .await;
            }
            None => {
                self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
                    .await;
            }
        }
    }

    /// Saves a PNG of the whole page (not only the viewport) as `<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1280.0);
        let height = size["height"].as_f64().unwrap_or(900.0).min(4000.0);
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        let png = STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
    }

    /// Types on the keyboard into whatever has focus, as a person would (WebDriver key actions).
    /// `\u{E004}` is Tab, `\u{E007}` is Enter.
    pub async fn keys(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                let key = c.to_string();
                [
                    json!({ "type": "keyDown", "value": key }),
                    json!({ "type": "keyUp", "value": key }),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await;
        self.call(reqwest::Method::DELETE, "/actions", None).await;
    }

    /// What has keyboard focus: its tag, id or text, and whether a focus ring is drawn.
    pub async fn focused(&self) -> (String, bool) {
        let found = self
            .script(
                "const e = document.activeElement; const s = getComputedStyle(e);\
                 return [e.id || e.textContent.trim() || e.tagName, s.outlineStyle !== 'none' && s.outlineWidth !== '0px'];",
                json!([]),
            )
            .await;
        (
            found[0].as_str().unwrap_or_default().to_owned(),
            found[1] == true,
        )
    }

    /// Basic accessibility of the page, checked in the browser: a language, one `<h1>`, every
    /// visible field named by a label (or aria-label), every image with an `alt`. Returns the
    /// problems found.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let script = "const problems = [];\
            if (!document.documentElement.lang) problems.push('<html> has no lang');\
            const h1 = document.querySelectorAll('h1').length;\
            if (h1 !== 1) problems.push(h1 + ' <h1> elements');\
            for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {\
              if (!f.labels.length && !f.getAttribute('aria-label')) problems.push('unlabelled field ' + (f.name || f.id));\
            }\
            for (const img of document.querySelectorAll('img:not([alt])')) problems.push('image without alt ' + img.src.slice(0, 40));\
            return problems;";
        self.script(script, json!([]))
            .await
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The browser's cookies for the current page, as WebDriver reports them.
    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium cleanly; chromedriver is killed right after by `Driver`'s drop.
        let url = self.session.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = reqwest::Client::new()
                        .delete(url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                });
            }
        })
        .join();
    }
}
