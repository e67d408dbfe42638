//! Faults switched over HTTP, as someone running `marketlink sandbox` or `marketlink demo`
//! would: the sandboxes' fault pages (`/aws/faults`, `/sandbox/faults`) throttle metering, and
//! marketlink rides it out, billing once, after the time Microsoft asked for.

use marketlink_core::{Clock, SystemClock};
use marketlink_e2e::{Stack, browser_trusting, start};
use marketlink_engine::metering::hour_floor;
use reqwest::StatusCode;
use serde_json::Value;

use crate::outages::{
    AZURE_USAGE, azure_usage_calls, billed_once_after_recovery, one_of_each, report,
};

/// Posts the fault page's form at `page` (the page answers with a redirect to itself).
async fn switch_on(client: &reqwest::Client, page: &str, form: &[(&str, &str)]) {
    let r = client.post(page).form(form).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
}

async fn faults(client: &reqwest::Client, page: &str) -> Vec<Value> {
    let r = client
        .get(format!("{page}?format=json"))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

fn aws_page(stack: &Stack) -> String {
    format!("{}/aws/faults", stack.aws_url)
}

#[tokio::test]
async fn metering_throttled_from_the_fault_pages_is_billed_once() {
    let stack = start(|_| {}).await;
    let (aws, azure) = one_of_each(&stack).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let azure_page = format!("{}/sandbox/faults", stack.azure.base_url);
    // AWS throttles the next four BatchMeterUsage calls: more than one flush's own attempts.
    switch_on(
        &client,
        &aws_page(&stack),
        &[
            ("match", "BatchMeterUsage"),
            ("kind", "throttling"),
            ("calls", "4"),
        ],
    )
    .await;
    // Microsoft answers the next metering call 429 with Retry-After: 6 (whichever path).
    for path in AZURE_USAGE {
        switch_on(
            &client,
            &azure_page,
            &[
                ("match", path),
                ("kind", "429"),
                ("retry_after_secs", "6"),
                ("calls", "1"),
            ],
        )
        .await;
    }

    let hour = hour_floor(SystemClock.now()) - time::Duration::hours(2);
    report(&stack, &aws.1, hour, 5).await;
    report(&stack, &azure, hour, 7).await;
    billed_once_after_recovery(&stack, &aws, &azure, hour).await;

    // The pages count what each fault caught: all four AWS calls, one Microsoft call.
    let aws_faults = faults(&client, &aws_page(&stack)).await;
    assert_eq!(aws_faults[0]["caught"], 4, "{aws_faults:?}");
    assert_eq!(aws_faults[0]["status"], "ended");
    let caught: u64 = faults(&client, &azure_page)
        .await
        .iter()
        .map(|f| f["caught"].as_u64().unwrap())
        .sum();
    assert_eq!(caught, 1);
    let throttled = stack
        .aws
        .call_log()
        .iter()
        .filter(|c| c.operation == "BatchMeterUsage" && c.summary.contains("ThrottlingException"))
        .count();
    assert_eq!(throttled, 4);
    let calls = azure_usage_calls(&stack).await;
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [429, 200]);
    assert!(
        calls[1].1 - calls[0].1 >= time::Duration::seconds(6),
        "Retry-After is honoured: {calls:?}"
    );

    // Stopping them leaves nothing in force.
    for page in [aws_page(&stack), azure_page.clone()] {
        stop_all(&client, &page).await;
        assert!(
            faults(&client, &page)
                .await
                .iter()
                .all(|f| f["status"] == "ended")
        );
    }
}

async fn stop_all(client: &reqwest::Client, page: &str) {
    let r = client.post(format!("{page}/stop")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}
