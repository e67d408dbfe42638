//! Delivery as AWS does it: SQS redelivery after the visibility timeout, the chaos switch
//! (duplicates, reordering, delays; repeatable from a seed) and SNS's HTTP retry policy.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{
    AwsSandboxConfig, DeliveryChaos, DeliveryOutcome, HttpDeliveryAttempt, OfferKind,
    SubscriptionAction,
};
use serde_json::Value;
use time::Duration;

use super::common::*;

#[tokio::test]
async fn a_message_not_deleted_comes_back_after_its_visibility_timeout() {
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = h.sb.sns_queue_url();
    sqs.send_message()
        .queue_url(&url)
        .message_body("once")
        .send()
        .await
        .unwrap();
    let first = sqs.receive_message().queue_url(&url).send().await.unwrap();
    let first = &first.messages()[0];
    assert!(
        sqs.receive_message()
            .queue_url(&url)
            .send()
            .await
            .unwrap()
            .messages()
            .is_empty()
    );
    h.clock.advance(Duration::seconds(31));
    let again = sqs
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap();
    let again = &again.messages()[0];
    assert_eq!(again.message_id(), first.message_id());
    assert_ne!(again.receipt_handle(), first.receipt_handle());
    assert_eq!(
        again.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount],
        "2"
    );
    // The stale handle "succeeds, but the message will not be deleted".
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(first.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(31));
    let third = sqs.receive_message().queue_url(&url).send().await.unwrap();
    let third = &third.messages()[0];
    assert_eq!(third.message_id(), first.message_id());
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(third.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(31));
    assert!(
        sqs.receive_message()
            .queue_url(&url)
            .send()
            .await
            .unwrap()
            .messages()
            .is_empty()
    );
}

const CHAOS: DeliveryChaos = DeliveryChaos {
    seed: 7,
    duplicate_percent: 50,
    reorder: true,
    max_delay_ms: 5000,
};

/// Sends 20 numbered messages, then receives until nothing is left in flight or delayed
/// (no deletes): (body, MessageId, receipt handle) in the order received, and how many were
/// visible before the delays ran out.
async fn chaotic_run(h: &Harness) -> (Vec<(String, String, String)>, usize) {
    let sqs = sqs(&h.url);
    let url = h.sb.sns_queue_url();
    for i in 0..20 {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("m{i:02}"))
            .send()
            .await
            .unwrap();
    }
    let receive = async |got: &mut Vec<(String, String, String)>| loop {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(3)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            return;
        }
        for m in out.messages() {
            got.push((
                m.body().unwrap().to_owned(),
                m.message_id().unwrap().to_owned(),
                m.receipt_handle().unwrap().to_owned(),
            ));
        }
    };
    let mut got = Vec::new();
    receive(&mut got).await;
    let early = got.len();
    h.clock.advance(Duration::seconds(6));
    receive(&mut got).await;
    (got, early)
}

#[tokio::test]
async fn sqs_chaos_duplicates_reorders_and_delays_repeatably() {
    let config = AwsSandboxConfig {
        delivery_chaos: Some(CHAOS),
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config.clone(), ManualClock::new(wall_now())).await;
    let (got, early) = chaotic_run(&h).await;
    let bodies: Vec<&str> = got.iter().map(|(b, _, _)| b.as_str()).collect();
    let mut distinct = bodies.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "every message arrives: {bodies:?}");
    assert!(got.len() > 20, "some arrive twice: {bodies:?}");
    assert!(early < got.len(), "some only after a delay");
    let mut sorted = bodies.clone();
    sorted.sort();
    assert_ne!(bodies, sorted, "out of order");
    // A copy keeps its MessageId and has its own receipt handle.
    let mut by_body: HashMap<&str, Vec<&(String, String, String)>> = HashMap::new();
    for g in &got {
        by_body.entry(g.0.as_str()).or_default().push(g);
    }
    let (_, pair) = by_body.iter().find(|(_, v)| v.len() == 2).unwrap();
    assert_eq!(pair[0].1, pair[1].1);
    assert_ne!(pair[0].2, pair[1].2);

    // Deleting one copy leaves the other to come back.
    let sqs = sqs(&h.url);
    let url = h.sb.sns_queue_url();
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(&pair[0].2)
        .send()
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(31));
    let mut again = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        again.extend(
            out.messages()
                .iter()
                .map(|m| m.message_id().unwrap().to_owned()),
        );
    }
    assert_eq!(again.len(), got.len() - 1);
    assert!(again.contains(&pair[0].1));

    // The same seed replays the same deliveries.
    let replay = start_with(config, ManualClock::new(wall_now())).await;
    let (got2, early2) = chaotic_run(&replay).await;
    let bodies2: Vec<&str> = got2.iter().map(|(b, _, _)| b.as_str()).collect();
    assert_eq!((bodies, early), (bodies2, early2));

    // Off again: in order, once.
    h.sb.set_delivery_chaos(None);
    assert_eq!(h.sb.delivery_chaos(), None);
    drain(&h, &url).await;
    for b in ["a", "b", "c"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(b)
            .send()
            .await
            .unwrap();
    }
    let out = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let plain: Vec<_> = out.messages().iter().map(|m| m.body().unwrap()).collect();
    assert_eq!(plain, ["a", "b", "c"]);
}

#[tokio::test]
async fn chaos_from_the_scenario_toml() {
    let config = AwsSandboxConfig::from_toml_str(
        "[delivery_chaos]\nseed = 3\nduplicate_percent = 100\nreorder = false\nmax_delay_ms = 0\n",
    )
    .unwrap();
    assert_eq!(
        config.delivery_chaos,
        Some(DeliveryChaos {
            seed: 3,
            duplicate_percent: 100,
            reorder: false,
            max_delay_ms: 0
        })
    );
    assert!(
        AwsSandboxConfig::from_toml_str("[delivery_chaos]\nduplicate_percent = 101\n").is_err()
    );
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    // Every event twice (100 %), same event id, in order (no reorder, no delay).
    let events = drain(&h, &h.sb.eventbridge_queue_url()).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["id"], events[1]["id"]);
    assert_eq!(events[2]["id"], events[3]["id"]);
    assert_eq!(
        events[0]["detail-type"],
        "Purchase Agreement Created - Proposer"
    );
}

/// An HTTP endpoint answering each POST with the next scripted status (200 when the script is
/// done), after `delay_first` for the first POST; records the envelopes it got.
async fn scripted_endpoint(
    script: &[u16],
    delay_first: StdDuration,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let script: Arc<Mutex<VecDeque<u16>>> = Arc::new(Mutex::new(script.iter().copied().collect()));
    let calls = Arc::new(Mutex::new(0u32));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/sns",
        axum::routing::post(move |body: String| {
            let (g, script, calls) = (g.clone(), script.clone(), calls.clone());
            async move {
                let first = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c == 1
                };
                if first {
                    tokio::time::sleep(delay_first).await;
                }
                g.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sns", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn http_harness(endpoint: String, timeout_ms: u64) -> Harness {
    let config = AwsSandboxConfig {
        sns_http_endpoint: Some(endpoint),
        sns_http_retry_delays_ms: vec![50, 50, 50],
        sns_http_timeout_ms: timeout_ms,
        ..AwsSandboxConfig::default()
    };
    start_with(config, ManualClock::new(wall_now())).await
}

/// The delivery attempts once the policy has run its course (the last one is final).
async fn settled(h: &Harness) -> Vec<HttpDeliveryAttempt> {
    for _ in 0..100 {
        let all = h.sb.http_deliveries();
        let done = all
            .last()
            .is_some_and(|a| !matches!(a.outcome, DeliveryOutcome::Retrying { .. }));
        if done {
            tokio::time::sleep(StdDuration::from_millis(150)).await;
            let again = h.sb.http_deliveries();
            if again.len() == all.len() {
                return again;
            }
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("deliveries did not settle: {:?}", h.sb.http_deliveries());
}

/// Publishes one message on the classic product's subscription topic: its HTTP subscription
/// is unconfirmed, so what goes over HTTP is one SubscriptionConfirmation.
async fn publish_one(h: &Harness) {
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
}

fn summary(attempts: &[HttpDeliveryAttempt]) -> Vec<(u32, Option<u16>, DeliveryOutcome)> {
    attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.outcome))
        .collect()
}

#[tokio::test]
async fn sns_http_retries_5xx_and_429_then_delivers() {
    let (endpoint, got) = scripted_endpoint(&[503, 429, 500], StdDuration::ZERO).await;
    let h = http_harness(endpoint, 5000).await;
    publish_one(&h).await;
    let attempts = settled(&h).await;
    let retry = DeliveryOutcome::Retrying { delay_ms: 50 };
    assert_eq!(
        summary(&attempts),
        [
            (1, Some(503), retry),
            (2, Some(429), retry),
            (3, Some(500), retry),
            (4, Some(200), DeliveryOutcome::Delivered)
        ]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.message_type == "SubscriptionConfirmation")
    );
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|e| e["MessageId"] == got[0]["MessageId"]));
    assert!(
        h.sb.call_log()
            .iter()
            .any(|c| c.operation == "HttpDelivery" && c.status == 429)
    );
}

#[tokio::test]
async fn sns_http_never_retries_4xx() {
    let (endpoint, got) = scripted_endpoint(&[400], StdDuration::ZERO).await;
    let h = http_harness(endpoint, 5000).await;
    publish_one(&h).await;
    let attempts = settled(&h).await;
    assert_eq!(
        summary(&attempts),
        [(1, Some(400), DeliveryOutcome::GivenUp)]
    );
    assert_eq!(got.lock().unwrap().len(), 1);
    let given_up =
        h.sb.call_log()
            .into_iter()
            .find(|c| c.operation == "HttpDeliveryGivenUp")
            .unwrap();
    assert_eq!(given_up.status, 400);
}

#[tokio::test]
async fn sns_http_gives_up_when_the_retries_run_out() {
    let (endpoint, got) = scripted_endpoint(&[500, 502, 503, 504], StdDuration::ZERO).await;
    let h = http_harness(endpoint, 5000).await;
    publish_one(&h).await;
    let attempts = settled(&h).await;
    assert_eq!(attempts.len(), 4, "the first try and three retries");
    assert_eq!(attempts[3].outcome, DeliveryOutcome::GivenUp);
    assert_eq!(attempts[3].status, Some(504));
    assert_eq!(got.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn sns_http_retries_timeouts_and_connection_errors() {
    // A slow first answer is a timeout, retried.
    let (endpoint, got) = scripted_endpoint(&[], StdDuration::from_millis(800)).await;
    let h = http_harness(endpoint, 200).await;
    publish_one(&h).await;
    let attempts = settled(&h).await;
    assert_eq!(attempts[0].status, None);
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no answer within 200 ms")
    );
    assert_eq!(
        attempts[0].outcome,
        DeliveryOutcome::Retrying { delay_ms: 50 }
    );
    assert_eq!(attempts.last().unwrap().outcome, DeliveryOutcome::Delivered);
    assert!(!got.lock().unwrap().is_empty());

    // Nobody listening: every attempt fails to connect, then the message is dropped.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/sns", l.local_addr().unwrap())
    };
    let h = http_harness(closed, 1000).await;
    publish_one(&h).await;
    let attempts = settled(&h).await;
    assert_eq!(attempts.len(), 4);
    assert!(
        attempts
            .iter()
            .all(|a| a.status.is_none() && a.error.is_some())
    );
    assert_eq!(attempts[3].outcome, DeliveryOutcome::GivenUp);
}

#[tokio::test]
async fn sns_http_chaos_sends_twice_and_out_of_order() {
    let (endpoint, got) = scripted_endpoint(&[], StdDuration::ZERO).await;
    let config = AwsSandboxConfig {
        sns_http_endpoint: Some(endpoint),
        delivery_chaos: Some(DeliveryChaos {
            seed: 11,
            duplicate_percent: 50,
            reorder: true,
            max_delay_ms: 400,
        }),
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, ManualClock::new(wall_now())).await;
    publish_one(&h).await;
    // Confirm the subscription once its confirmation arrives (it may arrive twice).
    let subscribe_url = loop {
        let first = got.lock().unwrap().first().cloned();
        if let Some(conf) = first {
            break conf["SubscribeURL"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    };
    let (status, _) = raw_get(&subscribe_url).await;
    assert_eq!(status, 200);
    let topic =
        format!("arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{CLASSIC}");
    for i in 0..12 {
        h.sb.sns_publish("subscription", CLASSIC, &format!("{{\"n\":{i}}}"))
            .await
            .unwrap();
    }
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let got = got.lock().unwrap().clone();
    let numbered: Vec<(i64, String)> = got
        .iter()
        .filter(|e| e["Type"] == "Notification" && e["TopicArn"] == topic.as_str())
        .filter_map(|e| {
            let m: Value = serde_json::from_str(e["Message"].as_str()?).ok()?;
            Some((m["n"].as_i64()?, e["MessageId"].as_str()?.to_owned()))
        })
        .collect();
    let mut ns: Vec<i64> = numbered.iter().map(|(n, _)| *n).collect();
    let arrival = ns.clone();
    ns.sort();
    ns.dedup();
    assert_eq!(
        ns,
        (0..12).collect::<Vec<_>>(),
        "all delivered: {arrival:?}"
    );
    assert!(numbered.len() > 12, "some twice: {arrival:?}");
    let mut sorted = arrival.clone();
    sorted.sort();
    assert_ne!(arrival, sorted, "out of order");
    // A second delivery repeats the MessageId.
    for (n, id) in &numbered {
        assert!(
            numbered
                .iter()
                .filter(|(m, _)| m == n)
                .all(|(_, other)| other == id)
        );
    }
}
