//! A thin layer over fantoccini for the journeys: one headless Chromium per test, steps that
//! wait the way a person would (for an element, a new page, a text), and full-page
//! screenshots. A WebDriver failure fails the test with the command that failed.

use std::{path::PathBuf, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, KeyAction, KeyActions},
    cookies::Cookie,
    elements::Element,
    error::CmdError,
};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Map, Value, json};

use crate::{chromedriver::Chromedriver, devtools::DevTools};

/// How long `find`, `submit` and `wait_for_text` poll before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// Chromium's flags: headless, a fixed desktop window, English pages.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    // The Microsoft sandbox's pages are served with a certificate from a generated CA.
    "--ignore-certificate-errors",
];

/// The folder screenshots go to: `$MARKETLINK_TEST_SCREENSHOTS`, else
/// `<target dir>/test-output/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MARKETLINK_TEST_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-output/screenshots")
}

/// How long one WebDriver command may take before the test fails (a hung Chromium).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a WebDriver command and returns its result; a failure or a hang fails the test,
/// naming what was being done.
async fn run<T>(command: impl Future<Output = Result<T, CmdError>>, doing: &str) -> T {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("WebDriver: {doing} failed: {error}"),
        Err(_) => panic!("WebDriver: {doing} took over {COMMAND_TIMEOUT:?}"),
    }
}

/// A CSS selector, or an XPath when it starts with `/`.
fn locate(selector: &str) -> Locator<'_> {
    if selector.starts_with('/') {
        Locator::XPath(selector)
    } else {
        Locator::Css(selector)
    }
}

/// What the session asks chromedriver for: Chromium (`$CHROME` when set) with our flags, and
/// the sandbox's self-signed certificate accepted.
fn capabilities() -> Map<String, Value> {
    let mut options = json!({ "args": CHROMIUM_ARGS });
    if let Ok(binary) = std::env::var("CHROME") {
        options["binary"] = json!(binary);
    }
    Map::from_iter([
        ("browserName".to_owned(), json!("chrome")),
        ("acceptInsecureCerts".to_owned(), json!(true)),
        ("goog:chromeOptions".to_owned(), options),
    ])
}

/// One headless Chromium session with its own chromedriver and a fresh profile (no cookies).
/// Chromium is closed when it is dropped (see `Chromedriver`'s drop).
pub struct Browser {
    session: Client,
    shots: PathBuf,
    _chromedriver: Chromedriver,
}

impl Browser {
    /// A fresh browser, or `None` when chromedriver is missing and skipping was asked for.
    pub async fn open() -> Option<Self> {
        let chromedriver = Chromedriver::start().await?;
        // chromedriver speaks plain HTTP on loopback: no TLS connector needed.
        let session = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities())
            .connect(chromedriver.url())
            .await
            .unwrap_or_else(|error| {
                panic!("Chromium did not start (is the `chromium` package installed?): {error}")
            });
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Some(Self {
            session,
            shots,
            _chromedriver: chromedriver,
        })
    }

    pub async fn goto(&self, url: &str) {
        run(self.session.goto(url), &format!("opening {url}")).await;
    }

    pub async fn url(&self) -> String {
        run(self.session.current_url(), "reading the URL")
            .await
            .to_string()
    }

    pub async fn refresh(&self) {
        run(self.session.refresh(), "reloading the page").await;
    }

    pub async fn title(&self) -> String {
        run(self.session.title(), "reading the title").await
    }

    /// The page's visible text; empty while the page is being replaced (a form just
    /// submitted: the body found may be gone by the time its text is asked for).
    pub async fn text(&self) -> String {
        let Some(body) = self.find_all("body").await.into_iter().next() else {
            return String::new();
        };
        match body.text().await {
            Ok(text) => text,
            Err(error) if error.is_stale_element_reference() => String::new(),
            Err(error) => panic!("WebDriver: reading the page's text failed: {error}"),
        }
    }

    /// Elements matching a CSS selector, or an XPath when it starts with `/` (possibly none).
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        run(
            self.session.find_all(locate(selector)),
            &format!("finding `{selector}`"),
        )
        .await
    }

    /// The first element matching a selector (see `find_all`), waiting for it to appear.
    pub async fn find(&self, selector: &str) -> Element {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(element) = self.find_all(selector).await.into_iter().next() {
                return element;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no element matches `{selector}` on {}:\n{}",
                self.url().await,
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, selector: &str) {
        let element = self.find(selector).await;
        run(element.click(), &format!("clicking `{selector}`")).await;
    }

    /// Clicks something that loads a new page (a link, a submit button) and waits until the new
    /// page has loaded, so the next step does not race the navigation.
    pub async fn submit(&self, selector: &str) {
        self.script("window.__marketlinkOldPage = true;").await;
        self.click(selector).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let loaded = self
                .script("return !window.__marketlinkOldPage && document.readyState === 'complete';")
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
    pub async fn fill(&self, selector: &str, text: &str) {
        let element = self.find(selector).await;
        run(element.clear(), &format!("clearing `{selector}`")).await;
        run(
            element.send_keys(text),
            &format!("typing into `{selector}`"),
        )
        .await;
    }

    /// Picks the `<option>` with `value` in a `<select>`.
    pub async fn select(&self, select_css: &str, value: &str) {
        self.click(&format!("{select_css} option[value=\"{value}\"]"))
            .await;
    }

    /// Fills the field a label names, checked to be labelled: fails when no `<label for>`
    /// starting with `label` exists.
    pub async fn fill_labelled(&self, label: &str, text: &str) {
        let script = "const want = arguments[0];\
            const label = [...document.querySelectorAll('label')].find(l => l.textContent.trim().startsWith(want));\
            return label && label.htmlFor ? '#' + CSS.escape(label.htmlFor) : null;";
        let css = self.script_with(script, vec![json!(label)]).await;
        let Some(css) = css.as_str() else {
            panic!("no <label for> named `{label}` on {}", self.url().await);
        };
        self.fill(css, text).await;
    }

    /// Runs JavaScript in the page and returns what it returns.
    pub async fn script(&self, script: &str) -> Value {
        self.script_with(script, Vec::new()).await
    }

    /// Runs JavaScript in the page with `arguments`, and returns what it returns.
    pub async fn script_with(&self, script: &str, args: Vec<Value>) -> Value {
        run(self.session.execute(script, args), "running a script").await
    }

    /// POSTs `fields` to `url` from a form built in a blank page, as another site's page does
    /// (AWS Marketplace hands the set-up token over this way).
    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) {
        self.goto("about:blank").await;
        let fields: Vec<Value> = fields.iter().map(|(k, v)| json!([k, v])).collect();
        self.script_with(
            "const [action, fields] = arguments;
             const form = document.createElement('form');
             form.method = 'POST';
             form.action = action;
             for (const [name, value] of fields) {
               const input = document.createElement('input');
               input.type = 'hidden'; input.name = name; input.value = value;
               form.appendChild(input);
             }
             document.body.appendChild(form);
             form.submit();",
            vec![json!(url), json!(fields)],
        )
        .await;
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

    /// Types on the keyboard into whatever has focus, as a person would (WebDriver key
    /// actions). Special keys are `fantoccini::key::Key`s as `char`s (Tab, Enter).
    pub async fn keys(&self, text: &str) {
        let actions = text
            .chars()
            .fold(KeyActions::new("keyboard".into()), |keys, c| {
                keys.then(KeyAction::Down { value: c })
                    .then(KeyAction::Up { value: c })
            });
        run(self.session.perform_actions(actions), "typing").await;
        run(self.session.release_actions(), "releasing the keys").await;
    }

    /// The browser's cookies for the current page.
    pub async fn cookies(&self) -> Vec<Cookie<'static>> {
        run(self.session.get_all_cookies(), "reading the cookies").await
    }

    /// A Chrome DevTools command (see `devtools`), and its result.
    async fn devtools(&self, cmd: &'static str, params: Value) -> Value {
        run(
            self.session.issue_cmd(DevTools::new(cmd, params)),
            &format!("DevTools {cmd}"),
        )
        .await
    }

    /// Emulates a phone-sized viewport (`Some(width)`) or goes back to the window's size.
    pub async fn narrow(&self, width: Option<u32>) {
        match width {
            Some(width) => {
                let metrics = json!({
                    "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": true,
                });
                self.devtools("Emulation.setDeviceMetricsOverride", metrics)
                    .await;
            }
            None => {
                self.devtools("Emulation.clearDeviceMetricsOverride", json!({}))
                    .await;
            }
        }
    }

    /// Saves a PNG of the whole page (not only the viewport) as `<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let metrics = self.devtools("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1280.0);
        let height = size["height"].as_f64().unwrap_or(900.0).min(4000.0);
        let clip = json!({ "x": 0, "y": 0, "width": width, "height": height, "scale": 1 });
        let shot = self
            .devtools(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true, "clip": clip }),
            )
            .await;
        let png = STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
    }
}
