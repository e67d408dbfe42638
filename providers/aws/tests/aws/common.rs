#![allow(dead_code)]
//! Harness: the sandbox on an ephemeral port and a provider configured against it.

use std::{sync::Arc, time::SystemTime};

use marketlink_aws::{
    AwsConfig, AwsProvider, IdentityMode, NotificationMode, ProductConfig, Secret,
    StaticCredentials,
};
use marketlink_core::{
    AuthenticatedMessage, InboundMessage, LandingToken, MarketplaceEvent, MarketplaceProvider,
    MemoryDirectory, ProviderError, PulledMessage, ResolvedPurchase, clock::ManualClock,
};
use marketlink_sandbox::aws::{AwsSandbox, AwsSandboxConfig};
use time::OffsetDateTime;

pub const CLASSIC: &str = "mlsandboxclassic0000000001";
pub const CONCURRENT: &str = "mlsandboxconcurrent0000002";
pub const BUYER: &str = "444455556666";
pub const OTHER_BUYER: &str = "777788889999";
pub const SELLER: &str = "111122223333";
pub const EB_SECRET: &str = "eventbridge-shared-secret-0123456789";

pub struct Harness {
    pub sb: Arc<AwsSandbox>,
    pub url: String,
    pub clock: ManualClock,
    pub provider: AwsProvider,
    pub config: AwsConfig,
    /// What the engine's store would know: every resolved purchase and interpreted event,
    /// with the names they taught. Survives `fresh_provider` (a restart).
    pub dir: Arc<MemoryDirectory>,
}

pub fn wall_now() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

pub fn topic(kind: &str, code: &str) -> String {
    format!("arn:aws:sns:us-east-1:{SELLER}:aws-mp-{kind}-notification-{code}")
}

pub fn provider_config(sb: &AwsSandbox, url: &str) -> AwsConfig {
    let host = url.trim_start_matches("http://").to_owned();
    AwsConfig {
        endpoint_url: Some(url.to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: "AKIASANDBOX".into(),
            secret_access_key: Secret::new("sandbox-secret"),
            session_token: None,
        }),
        products: vec![
            ProductConfig {
                product_code: CLASSIC.into(),
                product_id: Some("prod-mlsandboxclassic01".into()),
                notification_mode: NotificationMode::Sns,
                identity_mode: IdentityMode::Classic,
                subscription_topic_arn: Some(topic("subscription", CLASSIC)),
                entitlement_topic_arn: Some(topic("entitlement", CLASSIC)),
            },
            ProductConfig {
                product_code: CONCURRENT.into(),
                product_id: Some("prod-mlsandboxconcurr02".into()),
                notification_mode: NotificationMode::Eventbridge,
                identity_mode: IdentityMode::Concurrent,
                subscription_topic_arn: None,
                entitlement_topic_arn: None,
            },
        ],
        sqs_queue_urls: vec![sb.sns_queue_url(), sb.eventbridge_queue_url()],
        sqs_wait_time_secs: 0,
        sns_cert_hosts: vec![host],
        sns_allow_http: true,
        seller_account_id: Some(SELLER.into()),
        eventbridge_secret: Some(Secret::new(EB_SECRET)),
        initial_backoff_ms: 1,
        ..AwsConfig::default()
    }
}

pub async fn start_with(
    mut sb_config: AwsSandboxConfig,
    tweak: impl FnOnce(&mut AwsConfig),
) -> Harness {
    let clock = ManualClock::new(wall_now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    sb_config.public_base_url = url.clone();
    sb_config.sigv4_max_skew_secs = None;
    let sb = AwsSandbox::new(sb_config, Arc::new(clock.clone())).unwrap();
    let router = sb.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut config = provider_config(&sb, &url);
    tweak(&mut config);
    let provider = AwsProvider::new(config.clone(), Arc::new(clock.clone())).unwrap();
    Harness {
        sb,
        url,
        clock,
        provider,
        config,
        dir: Arc::new(MemoryDirectory::default()),
    }
}

pub async fn start() -> Harness {
    start_with(AwsSandboxConfig::default(), |_| {}).await
}

impl Harness {
    /// A second provider on the same sandbox (fresh memory, e.g. after a restart).
    pub fn fresh_provider(&self) -> AwsProvider {
        AwsProvider::new(self.config.clone(), Arc::new(self.clock.clone())).unwrap()
    }

    /// Resolves a token and stores the purchase, as the landing page does once claimed.
    pub async fn resolve(&self, token: &str) -> ResolvedPurchase {
        let purchase = self
            .provider
            .resolve(&LandingToken {
                token: token.into(),
            })
            .await
            .unwrap();
        self.dir.record(&purchase.subscription, &purchase.aliases);
        purchase
    }

    /// Interprets with the harness directory and stores what the events say, as the engine
    /// does when it applies them.
    pub async fn interpret_on(
        &self,
        provider: &AwsProvider,
        m: &AuthenticatedMessage,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let events = provider.interpret(m, self.dir.as_ref()).await?;
        for event in &events {
            self.dir.record(&event.subscription, &event.aliases);
        }
        Ok(events)
    }

    pub async fn interpret(
        &self,
        m: &AuthenticatedMessage,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        self.interpret_on(&self.provider, m).await
    }

    /// Everything on the queues now, acknowledged.
    pub async fn drain(&self) -> Vec<PulledMessage> {
        let mut all = Vec::new();
        loop {
            let got = self.provider.pull(10).await.unwrap();
            if got.is_empty() {
                return all;
            }
            for m in &got {
                self.provider.ack(&m.receipt).await.unwrap();
            }
            all.extend(got);
        }
    }

    /// Pull, authenticate and ack everything queued.
    pub async fn authenticated(&self) -> Vec<AuthenticatedMessage> {
        let mut out = Vec::new();
        for m in self.drain().await {
            out.push(self.provider.authenticate(&m.message).await.unwrap());
        }
        out
    }

    pub async fn interpret_all(&self) -> Vec<(String, Vec<MarketplaceEvent>)> {
        let mut out = Vec::new();
        for m in self.authenticated().await {
            let events = self.interpret(&m).await.unwrap();
            out.push((m.kind.clone(), events));
        }
        out
    }
}

pub fn sqs_message(body: &str) -> InboundMessage {
    InboundMessage {
        channel: "sqs".into(),
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}
