//! Browser journeys: headless Chromium, driven over WebDriver (fantoccini, ADR 0011), through
//! the real server and the marketplace sandboxes' own buyer pages. Each step asserts what the
//! page says and saves a screenshot (see `browser::screenshot_dir`); the README's tour uses a
//! selection of them (`scripts/tour-screenshots`).
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium chromium-driver`; CHROMEDRIVER and
//! CHROME point at other binaries); without them the tests fail, unless
//! MARKETLINK_TEST_SKIP_BROWSER=1.

/// A browser, or an early return from the test when skipping was asked for.
macro_rules! browser {
    () => {
        match $crate::browser::Browser::open().await {
            Some(browser) => browser,
            None => return,
        }
    };
}

mod browser;
mod checks;
mod chromedriver;
mod devtools;
mod fixtures;

mod admin;
mod aws;
mod azure;
mod gcp;
mod links;
mod session_cookie;
