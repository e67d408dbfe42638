//! Test harness: the real marketlink server (as `marketlink demo` wires it) and the marketplace
//! sandboxes on ephemeral ports, and a cookie-keeping browser-like HTTP client.

use std::{sync::Arc, time::Duration};

use marketlink_cli::{
    config::{Config, demo_base},
    run, sandbox,
};
use marketlink_core::SystemClock;
use marketlink_sandbox::{
    aws::{AwsSandbox, AwsSandboxConfig},
    azure::{AzureSandboxConfig, AzureSandboxHandle},
    gcp::GcpSandbox,
};
use marketlink_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

pub mod db_proxy;
mod gcp_stack;
pub mod smtp_sink;

pub use gcp_stack::start_gcp;
use gcp_stack::{GcpLaunch, start_google};

pub struct Stack {
    pub app_url: String,
    pub aws: Arc<AwsSandbox>,
    pub aws_url: String,
    pub azure: AzureSandboxHandle,
    /// The Google sandbox, in stacks from [`start_gcp`] only.
    pub gcp: Option<sandbox::RunningGcp>,
    /// A second handle on the application's database, for assertions.
    pub store: Store,
    /// The configuration the server runs with (pointed at both sandboxes).
    pub config: Config,
    /// Stops the sandboxes.
    shutdown: CancellationToken,
    /// Stops the marketlink servers (not the sandboxes): see [`Stack::restart`].
    servers_stop: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.servers_stop.cancel();
        self.shutdown.cancel();
    }
}

impl Stack {
    /// The Google sandbox of a stack from [`start_gcp`].
    pub fn google(&self) -> &GcpSandbox {
        &self.gcp.as_ref().expect("a stack from start_gcp").sandbox
    }

    /// Stops the marketlink server (workers included) and starts a new process's worth of it
    /// on the same address and database, as after a deployment or a crash: nothing held in
    /// memory survives. The sandboxes keep running.
    pub async fn restart(&mut self) {
        self.servers_stop.cancel();
        for server in self.servers.drain(..) {
            server.await.expect("server task");
        }
        self.servers_stop = CancellationToken::new();
        let addr = self.app_url.trim_start_matches("http://");
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("the same address again");
        let (server, ready) =
            spawn_server(self.config.clone(), listener, self.servers_stop.clone()).await;
        ready.await.expect("server starts again");
        self.servers.push(server);
    }

    /// Stops the marketlink server and closes the stack's own handle on its database, so that
    /// nothing holds the database while a test restores a backup over it. The sandboxes run on.
    pub async fn stop_server(&mut self) {
        self.servers_stop.cancel();
        for server in self.servers.drain(..) {
            server.await.expect("server task");
        }
        self.store.close().await;
    }

    /// After [`Stack::stop_server`]: starts the server on `database_url` (a restored database),
    /// at the same address, and points the stack's store handle and configuration at it.
    pub async fn start_server_on(&mut self, database_url: &str) {
        self.config.database.url = database_url.to_owned();
        self.store = Store::connect(database_url, &StoreOptions::default())
            .await
            .expect("store");
        self.restart().await;
    }
}

/// One marketlink server on `listener`, as `marketlink serve` runs it; answers when ready.
async fn spawn_server(
    config: Config,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let providers = run::providers(&config, Arc::new(SystemClock))
        .await
        .expect("providers");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let result = run::serve_on(config, providers, listener, stop, move |_| {
            let _ = ready_tx.send(());
        })
        .await;
        if let Err(error) = result {
            eprintln!("server stopped: {error:#}");
        }
    });
    (server, ready_rx)
}

/// Starts the sandboxes and the server. `tune` adjusts the AWS scenario (token lifetime...).
pub async fn start(tune: impl FnOnce(&mut AwsSandboxConfig)) -> Stack {
    start_with(tune, |_| {}).await
}

/// Like [`start`], also adjusting the Microsoft scenario.
pub async fn start_with(
    tune: impl FnOnce(&mut AwsSandboxConfig),
    tune_azure: impl FnOnce(&mut AzureSandboxConfig),
) -> Stack {
    start_full(tune, tune_azure, |_| {}).await
}

/// Like [`start_with`], also adjusting marketlink's own configuration.
pub async fn start_full(
    tune: impl FnOnce(&mut AwsSandboxConfig),
    tune_azure: impl FnOnce(&mut AzureSandboxConfig),
    tune_config: impl FnOnce(&mut Config),
) -> Stack {
    launch(tune, tune_azure, tune_config, None, 1, true, None)
        .await
        .0
}

/// Like [`start_full`], with the AWS sandbox's SNS topics subscribed by the SQS queue only
/// (no HTTPS subscription to `/aws/sns`): marketlink hears SNS through the queue alone.
pub async fn start_sns_over_sqs_only(tune_config: impl FnOnce(&mut Config)) -> Stack {
    launch(|_| {}, |_| {}, tune_config, None, 1, false, None)
        .await
        .0
}

/// Like [`start_full`] (no Microsoft tuning), on the database at `database_url` (a PostgreSQL
/// URL, or `sqlite:` on a file of the test's choosing) rather than a fresh SQLite file.
pub async fn start_on_database(
    database_url: &str,
    tune: impl FnOnce(&mut AwsSandboxConfig),
    tune_config: impl FnOnce(&mut Config),
) -> Stack {
    let database = Some(database_url.to_owned());
    launch(tune, |_| {}, tune_config, database, 1, true, None)
        .await
        .0
}

/// `replicas` marketlink servers sharing one database at `database_url` (and a session
/// secret, as a deployment behind a load balancer would), with one set of sandboxes. The
/// stack's `app_url` is the first replica, which the sandboxes notify; the other replicas'
/// URLs come second. Every replica runs its own workers.
pub async fn start_replicas(database_url: &str, replicas: usize) -> (Stack, Vec<String>) {
    launch(
        |_| {},
        |_| {},
        |config| {
            config.server.session_secret =
                Some(serde_json::from_value(serde_json::json!("r".repeat(64))).expect("secret"));
        },
        Some(database_url.to_owned()),
        replicas,
        true,
        None,
    )
    .await
}

/// Whether this machine runs without PostgreSQL (`MARKETLINK_TEST_SKIP_POSTGRES=1`; CI never
/// sets it): journeys that need it return early.
pub fn postgres_skipped() -> bool {
    std::env::var("MARKETLINK_TEST_SKIP_POSTGRES").as_deref() == Ok("1")
}

/// The PostgreSQL test server's admin URL (`MARKETLINK_TEST_POSTGRES_URL`).
pub fn postgres_admin_url() -> String {
    std::env::var("MARKETLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new, empty PostgreSQL database on the test server; its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::{Connection, Executor};
    let admin = postgres_admin_url();
    let name = format!("marketlink_e2e_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL test server (MARKETLINK_TEST_POSTGRES_URL)");
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Drops a database made by [`fresh_postgres_database`], unless
/// `MARKETLINK_TEST_NO_DESTROY=1` keeps it for inspection.
pub async fn drop_postgres_database(url: &str) {
    use sqlx::{Connection, Executor};
    if std::env::var("MARKETLINK_TEST_NO_DESTROY").as_deref() == Ok("1") {
        return;
    }
    let name = url.rsplit_once('/').map_or(url, |(_, name)| name);
    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL test server");
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .expect("drop database");
}

async fn launch(
    tune: impl FnOnce(&mut AwsSandboxConfig),
    tune_azure: impl FnOnce(&mut AzureSandboxConfig),
    tune_config: impl FnOnce(&mut Config),
    database: Option<String>,
    replicas: usize,
    sns_over_http: bool,
    gcp: Option<GcpLaunch>,
) -> (Stack, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let mut listeners = Vec::with_capacity(replicas);
    for _ in 0..replicas.max(1) {
        listeners.push(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind app"),
        );
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().expect("addr")))
        .collect();
    let app_url = urls[0].clone();
    let mut scenario = AwsSandboxConfig {
        // Tests send lifecycle events explicitly.
        subscribe_delay_ms: 3_600_000,
        ..AwsSandboxConfig::default()
    };
    tune(&mut scenario);
    let mut vendor = sandbox::VendorUrls::for_public_url(&app_url);
    if !sns_over_http {
        vendor.aws_sns = None;
    }
    let aws = sandbox::start_aws(
        "127.0.0.1:0".parse().expect("addr"),
        scenario,
        &vendor,
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await
    .expect("AWS sandbox starts");
    let aws_addr = aws
        .base_url
        .trim_start_matches("http://")
        .parse()
        .expect("sandbox addr");
    let database =
        database.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("e2e.db").display()));
    let mut azure_scenario = AzureSandboxConfig::default();
    tune_azure(&mut azure_scenario);
    let azure = sandbox::start_azure(
        "127.0.0.1:0".parse().expect("addr"),
        azure_scenario,
        &sandbox::VendorUrls::for_public_url(&app_url),
        Arc::new(SystemClock),
    )
    .await
    .expect("Microsoft sandbox starts");
    let mut config = Config::load_over(Some(&demo_base(aws_addr)), None).expect("demo config");
    config.database.url = database.clone();
    config.server.public_url = app_url.clone();
    if let Some(aws) = config.aws.as_mut() {
        aws.sqs_wait_time_secs = 0;
    }
    config.azure = Some(sandbox::azure_provider_config(&azure, &app_url));
    let gcp = match gcp {
        Some(launch) => Some(start_google(launch, &mut config, dir.path(), shutdown.clone()).await),
        None => None,
    };
    // Every simulated buyer comes from 127.0.0.1, so one journey's dozen buyers would share
    // one office's bucket: room for them here; tests/journeys/rate_limits.rs sets its own.
    let roomy = marketlink_web::limits::Rate {
        per_minute: 6_000,
        burst: 1_000,
    };
    config.rate_limits.sign_in = roomy;
    config.rate_limits.sign_up = roomy;
    config.rate_limits.landing = roomy;
    tune_config(&mut config);
    let served_config = config.clone();
    // Replicas start together, as a rolling deployment would: each migrates on start.
    let servers_stop = CancellationToken::new();
    let mut ready = Vec::with_capacity(listeners.len());
    let mut servers = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let (server, ready_rx) = spawn_server(config.clone(), listener, servers_stop.clone()).await;
        servers.push(server);
        ready.push(ready_rx);
    }
    for ready_rx in ready {
        ready_rx.await.expect("server starts");
    }
    let store = Store::connect(&database, &StoreOptions::default())
        .await
        .expect("store");
    let stack = Stack {
        app_url,
        aws_url: aws.base_url.clone(),
        aws: aws.sandbox,
        azure,
        gcp,
        store,
        config: served_config,
        shutdown,
        servers_stop,
        servers,
        _dir: dir,
    };
    (stack, urls.into_iter().skip(1).collect())
}

/// A browser: keeps cookies, does not follow redirects (tests look at each step).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A browser whose cookie jar the test can read, to copy its cookies to another client.
pub fn browser_with_jar() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    (client, jar)
}

/// Another browser holding a copy of the cookies `jar` keeps for `url`: the same session on
/// another device, or a stolen cookie.
pub fn browser_with_copy_of(jar: &reqwest::cookie::Jar, url: &str) -> reqwest::Client {
    use reqwest::cookie::CookieStore;
    let url: reqwest::Url = url.parse().expect("url");
    let (client, copy) = browser_with_jar();
    let cookies = jar.cookies(&url).expect("the browser holds cookies");
    for pair in cookies.to_str().expect("cookie header").split("; ") {
        copy.add_cookie_str(&format!("{pair}; Path=/"), &url);
    }
    client
}

/// A browser that also trusts the Microsoft sandbox's CA (its sign-in pages are https).
pub fn browser_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client")
}

/// The hidden CSRF field of a page.
pub fn csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    html.find(marker)
        .map(|at| &html[at + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .expect("page has a CSRF field")
        .to_owned()
}

/// Polls `check` until it is true or 30 s pass. A passing check returns at once; the long
/// limit only spares a loaded CI machine (2 cores running many journeys) a false failure.
/// An operator of the admin portal with this password, hashed as `marketlink admin
/// hash-password` does.
pub async fn operator(email: &str, password: &str) -> marketlink_web::admin::AdminUser {
    marketlink_web::admin::AdminUser {
        email: email.into(),
        password_hash: marketlink_web::password::hash(password.into())
            .await
            .expect("hash"),
    }
}

/// A browser signed in to the admin portal as `email`.
pub async fn operator_signs_in(stack: &Stack, email: &str, password: &str) -> reqwest::Client {
    let client = browser();
    let login = format!("{}/admin/login", stack.app_url);
    let signed_in = submit_form(
        &client,
        &login,
        &login,
        &[("email", email), ("password", password)],
    )
    .await;
    assert_eq!(
        signed_in.status(),
        reqwest::StatusCode::SEE_OTHER,
        "operator signs in"
    );
    client
}

/// Opens the form at `page` with `client`, then posts `fields` to `action` with the page's
/// CSRF token, as a browser submitting it would.
pub async fn submit_form(
    client: &reqwest::Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let html = client
        .get(page)
        .send()
        .await
        .expect("form page")
        .text()
        .await
        .expect("form page body");
    let token = csrf(&html);
    let mut form = vec![("csrf", token.as_str())];
    form.extend_from_slice(fields);
    client
        .post(action)
        .form(&form)
        .send()
        .await
        .expect("form submitted")
}

pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An AWS buyer of the classic demo product, signed up in `client` as `email`: landing page,
/// then the sign-up form. The subscription stays pending until the test confirms it.
pub async fn aws_buyer_signs_up(
    stack: &Stack,
    client: &reqwest::Client,
    offer: marketlink_sandbox::aws::OfferKind,
    account: &str,
    email: &str,
) -> marketlink_sandbox::aws::Purchase {
    let purchase = stack
        .aws
        .purchase("mlsandboxclassic0000000001", offer, account)
        .expect("sandbox purchase");
    client
        .post(format!("{}/aws/landing", stack.app_url))
        .form(&[(
            "x-amzn-marketplace-token",
            purchase.registration_token.as_str(),
        )])
        .send()
        .await
        .expect("landing");
    let signed_up = sign_up(client, &stack.app_url, email).await;
    assert_eq!(
        signed_up.status(),
        reqwest::StatusCode::SEE_OTHER,
        "sign-up succeeds"
    );
    purchase
}

/// The sign-up form of marketlink at `app_url`, filled in as `email` by the browser the landing
/// page sent there; marketlink's answer.
pub async fn sign_up(client: &reqwest::Client, app_url: &str, email: &str) -> reqwest::Response {
    let html = client
        .get(format!("{app_url}/signup"))
        .send()
        .await
        .expect("sign-up page")
        .text()
        .await
        .expect("sign-up page body");
    client
        .post(format!("{app_url}/signup"))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("name", "Customer"),
            ("company", "Customer Inc"),
            ("email", email),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .expect("sign-up")
}

/// Follows the landing page through the sandbox's sign-in page as `user`; returns the
/// response of our sign-in callback.
pub async fn azure_land_and_sign_in(
    client: &reqwest::Client,
    landing_url: &str,
    user: &str,
) -> reqwest::Response {
    let callback = azure_sign_in_callback_url(client, landing_url, user).await;
    client.get(&callback).send().await.expect("sign-in step")
}

/// Follows the landing page through the sandbox's sign-in page as `user`, up to the URL of our
/// sign-in callback that Entra sends the browser back to (not opened).
pub async fn azure_sign_in_callback_url(
    client: &reqwest::Client,
    landing_url: &str,
    user: &str,
) -> String {
    let landed = client.get(landing_url).send().await.expect("sign-in step");
    assert_eq!(
        landed.status(),
        reqwest::StatusCode::SEE_OTHER,
        "sign-in comes first"
    );
    let authorize = landed.headers()["location"]
        .to_str()
        .expect("sign-in step")
        .to_owned();
    let page = client
        .get(&authorize)
        .send()
        .await
        .expect("sign-in step")
        .text()
        .await
        .expect("sign-in step");
    // The sign-in page has one form per test user; submit the one for `user`.
    let form = page
        .split("<form")
        .find(|f| f.contains(&format!("name=\"user\" value=\"{user}\"")))
        .expect("a sign-in form for the user");
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let attr = |name: &str| {
            input
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            fields.push((name, value.replace("&amp;", "&")));
        }
    }
    let signed_in = client
        .post(&authorize)
        .form(&fields)
        .send()
        .await
        .expect("sign-in step");
    assert!(
        signed_in.status().is_redirection(),
        "{}",
        signed_in.status()
    );
    signed_in.headers()["location"]
        .to_str()
        .expect("sign-in step")
        .to_owned()
}
