//! What the journeys check on our own pages beyond their text: basic accessibility (before
//! every screenshot), keyboard focus, and that a page fits a phone's width.

use crate::browser::Browser;

/// Basic accessibility of the page, checked in the browser: a language, one `<h1>`, every
/// visible field named by a label (or aria-label), every image with an `alt`. Returns the
/// problems found.
async fn accessibility_problems(browser: &Browser) -> Vec<String> {
    let script = "const problems = [];\
        if (!document.documentElement.lang) problems.push('<html> has no lang');\
        const h1 = document.querySelectorAll('h1').length;\
        if (h1 !== 1) problems.push(h1 + ' <h1> elements');\
        for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {\
          if (!f.labels.length && !f.getAttribute('aria-label')) problems.push('unlabelled field ' + (f.name || f.id));\
        }\
        for (const img of document.querySelectorAll('img:not([alt])')) problems.push('image without alt ' + img.src.slice(0, 40));\
        return problems;";
    browser
        .script(script)
        .await
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A screenshot of one of our pages, after checking its basic accessibility (the sandboxes'
/// pages stand in for the marketplaces' and get a plain `browser.screenshot`).
pub async fn shot(browser: &Browser, name: &str) {
    let problems = accessibility_problems(browser).await;
    assert!(
        problems.is_empty(),
        "{name} ({}): {problems:?}",
        browser.url().await
    );
    browser.screenshot(name).await;
}

/// What has keyboard focus: its id, text or tag, and whether a focus ring is drawn.
pub async fn focused(browser: &Browser) -> (String, bool) {
    let found = browser
        .script(
            "const e = document.activeElement; const s = getComputedStyle(e);\
             return [e.id || e.textContent.trim() || e.tagName, s.outlineStyle !== 'none' && s.outlineWidth !== '0px'];",
        )
        .await;
    (
        found[0].as_str().unwrap_or_default().to_owned(),
        found[1] == true,
    )
}

/// Fails when the page is wider than the viewport (sideways scrolling on a phone).
pub async fn assert_fits(browser: &Browser, what: &str) {
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "{what} scrolls sideways by {overflow} px on a narrow screen"
    );
}
