//! `marketlink doctor`: checks the configuration against the database, this server's public
//! URL and every configured marketplace, and says in plain words what is wrong.
//!
//! Exit codes: 0 when nothing failed (warnings allowed), 1 on any failure; a configuration
//! that does not even load still exits 2 before doctor runs.

use std::{net::IpAddr, sync::Arc, time::Duration};

use marketlink_core::{Diagnosis, DiagnosisSummary, Marketplace, MarketplaceProvider, SystemClock};
use marketlink_store::{Store, StoreOptions, redact_url};
use serde::Serialize;

use crate::config::Config;

/// Everything doctor found, in the order it was checked.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub findings: Vec<Diagnosis>,
    pub summary: DiagnosisSummary,
}

impl DoctorReport {
    pub fn failed(&self) -> bool {
        self.summary.failures > 0
    }

    /// The failures, for callers that only care what is broken.
    pub fn failures(&self) -> impl Iterator<Item = &Diagnosis> {
        self.findings.iter().filter(|d| d.is_failure())
    }

    /// One line per check (`ok`/`warn`/`FAIL`, check, detail), then a summary line.
    pub fn render(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|d| d.check.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for d in &self.findings {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                d.status.label(),
                d.check,
                d.detail
            ));
        }
        let s = self.summary;
        out.push_str(&format!(
            "\n{} ok, {} warning(s), {} failure(s){}\n",
            s.ok,
            s.warnings,
            s.failures,
            if s.failures > 0 {
                ": fix the FAIL lines above"
            } else {
                ""
            }
        ));
        out
    }
}

/// `marketlink doctor`: prints the report; `Ok(false)` when something failed.
pub async fn run(config: Config, json: bool) -> anyhow::Result<bool> {
    let report = check(&config).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(!report.failed())
}

/// Runs every check. Never fails: whatever goes wrong is a finding.
pub async fn check(config: &Config) -> DoctorReport {
    let mut findings = Vec::new();
    findings.extend(database(config).await);
    findings.extend(public_url(config));
    findings.push(healthz(config).await);
    findings.extend(secrets(config));
    let providers = build_providers(config, &mut findings);
    findings.extend(endpoints(config, &providers));
    findings.extend(catalog(config));
    for provider in &providers {
        findings.extend(provider.diagnose().await);
    }
    let summary = DiagnosisSummary::of(&findings);
    DoctorReport { findings, summary }
}

async fn database(config: &Config) -> Vec<Diagnosis> {
    let shown = redact_url(&config.database.url);
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let store = match Store::connect(&config.database.url, &options).await {
        Ok(store) => store,
        Err(e) => {
            return vec![Diagnosis::failed(
                "database",
                format!(
                    "cannot open database {shown} ({e}): check database.url, that the server is running and the credentials"
                ),
            )];
        }
    };
    let mut out = vec![Diagnosis::ok(
        "database",
        format!("database {shown} is reachable"),
    )];
    out.push(migrations(config, &store).await);
    store.close().await;
    out
}

/// Whether the database carries this build's migrations; newer ones than it knows are a
/// warning: fine while a rolling upgrade replaces this release, stale once it is done.
async fn migrations(config: &Config, store: &Store) -> Diagnosis {
    let check = "database.migrations";
    let pending = match store.pending_migrations().await {
        Ok(pending) => pending,
        Err(e) => {
            return Diagnosis::failed(check, format!("cannot read the applied migrations ({e})"));
        }
    };
    if !pending.is_empty() {
        return Diagnosis::failed(
            check,
            format!(
                "{} migration(s) are not applied ({}): run `marketlink migrate`{}",
                pending.len(),
                pending.join(", "),
                if config.database.migrate_on_start {
                    " (or let `marketlink serve` apply them: database.migrate_on_start is on)"
                } else {
                    ""
                }
            ),
        );
    }
    match store.newer_migrations().await {
        Ok(newer) if newer.is_empty() => Diagnosis::ok(check, "every migration is applied"),
        Ok(newer) => Diagnosis::warning(
            check,
            format!(
                "every migration of this build is applied, and {} newer one(s) this build does not know ({}): a newer release migrated the database; expected during a rolling upgrade, otherwise upgrade this binary",
                newer.len(),
                newer.join(", ")
            ),
        ),
        Err(e) => Diagnosis::failed(check, format!("cannot read the applied migrations ({e})")),
    }
}

/// Where the public URL points: loopback, a private network, or somewhere marketplaces reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Loopback,
    Private,
    Public,
}

fn reach(host: &url::Host<&str>) -> Reach {
    let ip = match host {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            return if d == "localhost" || d.ends_with(".localhost") {
                Reach::Loopback
            } else if d.ends_with(".local") || d.ends_with(".internal") || !d.contains('.') {
                Reach::Private
            } else {
                Reach::Public
            };
        }
        url::Host::Ipv4(ip) => IpAddr::V4(*ip),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip),
    };
    match ip {
        ip if ip.is_loopback() => Reach::Loopback,
        IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() || v4.is_unspecified() => {
            Reach::Private
        }
        // fc00::/7 unique local, fe80::/10 link local.
        IpAddr::V6(v6)
            if v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80 =>
        {
            Reach::Private
        }
        _ => Reach::Public,
    }
}

fn public_url(config: &Config) -> Vec<Diagnosis> {
    let check = "server.public_url";
    let raw = &config.server.public_url;
    let url = match url::Url::parse(raw) {
        Ok(url) => url,
        Err(e) => {
            return vec![Diagnosis::failed(
                check,
                format!("`{raw}` is not a URL ({e})"),
            )];
        }
    };
    let Some(host) = url.host() else {
        return vec![Diagnosis::failed(check, format!("`{raw}` has no host"))];
    };
    let https = url.scheme() == "https";
    vec![match (https, reach(&host)) {
        (true, Reach::Public) => Diagnosis::ok(check, format!("{raw} is https on a public host")),
        (true, where_) => Diagnosis::warning(
            check,
            format!(
                "{raw} is on a {} host: marketplaces and buyers outside cannot reach it; use the public DNS name for production",
                if where_ == Reach::Loopback {
                    "loopback"
                } else {
                    "private"
                }
            ),
        ),
        (false, Reach::Loopback) => Diagnosis::warning(
            check,
            format!(
                "{raw} is http on loopback: fine for the sandbox, marketplaces cannot reach it"
            ),
        ),
        (false, _) => Diagnosis::failed(
            check,
            format!(
                "{raw} is plain http: AWS and Microsoft require https landing and webhook URLs; put marketlink behind TLS and set server.public_url to the https URL"
            ),
        ),
    }]
}

/// Is this very server answering at its public URL? Only a warning: doctor may run before
/// `serve`, or from a host that cannot see the public address.
async fn healthz(config: &Config) -> Diagnosis {
    let check = "server.healthz";
    let url = format!("{}/healthz", config.server.public_url.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(e) => return Diagnosis::warning(check, format!("cannot build an HTTP client: {e}")),
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            Diagnosis::ok(check, format!("GET {url} answered {}", r.status().as_u16()))
        }
        Ok(r) => Diagnosis::warning(
            check,
            format!(
                "GET {url} answered {}: is it marketlink behind that URL (proxy routes)?",
                r.status().as_u16()
            ),
        ),
        Err(e) => Diagnosis::warning(
            check,
            format!(
                "GET {url} failed ({e}): is marketlink serving? (fine if you run doctor before `marketlink serve`)"
            ),
        ),
    }
}

fn secrets(config: &Config) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let https = config.server.public_url.starts_with("https://");
    out.push(match (&config.server.session_secret, https) {
        (Some(_), _) => Diagnosis::ok(
            "server.session_secret",
            "the session signing key is set",
        ),
        (None, false) => Diagnosis::warning(
            "server.session_secret",
            "not set: a random key is made at start-up, so sessions end on restart and replicas cannot share them (fine for the demo; set 64+ random characters, e.g. `openssl rand -base64 48`)",
        ),
        (None, true) => Diagnosis::failed(
            "server.session_secret",
            "not set on a production (https) deployment: sessions end on every restart and replicas cannot share them; set 64+ random characters, e.g. `openssl rand -base64 48`",
        ),
    });
    if let Some(webhooks) = &config.webhooks {
        // The secret's format is checked when the configuration loads; here, where it goes.
        let plain = webhooks.url.starts_with("http://");
        let loopback = url::Url::parse(&webhooks.url)
            .ok()
            .and_then(|u| u.host().map(|h| reach(&h) == Reach::Loopback))
            .unwrap_or(false);
        out.push(if plain && !loopback {
            Diagnosis::warning(
                "webhooks",
                format!(
                    "provisioning webhooks are signed but go to {} over plain http: use https",
                    webhooks.url
                ),
            )
        } else {
            Diagnosis::ok(
                "webhooks",
                format!(
                    "provisioning webhooks go to {}, signed with webhooks.secret",
                    webhooks.url
                ),
            )
        });
    }
    out.push(if config.admin.users.is_empty() {
        Diagnosis::warning(
            "admin.users",
            "no operator can sign in to /admin: add one with `marketlink admin hash-password` and [[admin.users]]",
        )
    } else {
        Diagnosis::ok(
            "admin.users",
            format!("{} operator(s) can sign in to /admin", config.admin.users.len()),
        )
    });
    out
}

/// The configured marketplaces' adapters, built without network calls (the Azure buyer
/// sign-in is checked by its diagnosis instead of being discovered here).
fn build_providers(
    config: &Config,
    findings: &mut Vec<Diagnosis>,
) -> Vec<Arc<dyn MarketplaceProvider>> {
    let clock: Arc<dyn marketlink_core::Clock> = Arc::new(SystemClock);
    let mut providers: Vec<Arc<dyn MarketplaceProvider>> = Vec::new();
    if let Some(aws) = &config.aws {
        match marketlink_aws::AwsProvider::new(aws.clone(), clock.clone()) {
            Ok(p) => providers.push(Arc::new(p)),
            Err(e) => findings.push(Diagnosis::failed(
                "aws",
                format!("[aws] is not usable: {e}"),
            )),
        }
    }
    if let Some(azure) = &config.azure {
        match marketlink_azure::AzureProvider::new(azure.clone(), clock.clone()) {
            Ok(p) => providers.push(Arc::new(p)),
            Err(e) => findings.push(Diagnosis::failed(
                "azure",
                format!("[azure] is not usable: {e}"),
            )),
        }
    }
    if let Some(gcp) = &config.gcp {
        match marketlink_gcp::GcpProvider::new(gcp.clone(), clock.clone()) {
            Ok(p) => providers.push(Arc::new(p)),
            Err(e) => findings.push(Diagnosis::failed(
                "gcp",
                format!("[gcp] is not usable: {e}"),
            )),
        }
    }
    if config.aws.is_none() && config.azure.is_none() && config.gcp.is_none() {
        findings.push(Diagnosis::warning(
            "marketplaces",
            "no marketplace is configured: add an [aws], [azure] or [gcp] section",
        ));
    }
    providers
}

/// The URLs to paste into the marketplaces' seller consoles.
fn endpoints(config: &Config, providers: &[Arc<dyn MarketplaceProvider>]) -> Vec<Diagnosis> {
    let base = config.server.public_url.trim_end_matches('/');
    let mut out = Vec::new();
    for provider in providers {
        let m = provider.marketplace();
        let console = if m == Marketplace::AWS {
            "AWS Marketplace Management Portal (fulfillment URL)"
        } else if m == Marketplace::AZURE {
            "Partner Center technical configuration (landing page URL)"
        } else if m.as_str() == "gcp" {
            "Producer Portal's technical integration (sign-up URL)"
        } else {
            "the marketplace's seller console"
        };
        out.push(Diagnosis::ok(
            format!("{m}.landing_url"),
            format!("{base}/{m}/landing: paste into {console}"),
        ));
        for endpoint in provider.inbound_endpoints() {
            out.push(Diagnosis::ok(
                format!("{m}.endpoint.{}", endpoint.channel),
                format!(
                    "{base}{}: receives {} notifications",
                    endpoint.path, endpoint.channel
                ),
            ));
        }
    }
    out
}

/// A Google listing's product code is the entitlement's `productExternalName`, the product's
/// service name, which `[gcp] service_name` also holds (the sign-up JWT's `aud`).
fn gcp_listing_problem(
    config: &Config,
    product: &impl std::fmt::Display,
    product_code: &str,
) -> Option<String> {
    match &config.gcp {
        None => Some(format!(
            "product {product} is listed on gcp but there is no [gcp] section"
        )),
        Some(gcp) if gcp.service_name != product_code => Some(format!(
            "product {product} is listed on gcp as {product_code} but [gcp] service_name is {}: Google names the product by its service name",
            gcp.service_name
        )),
        Some(_) => None,
    }
}

/// The catalog and the marketplace sections must name the same listings.
fn catalog(config: &Config) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut listed_aws = Vec::new();
    for product in &config.catalog.products {
        for listing in &product.listings {
            let m = &listing.marketplace;
            if *m == Marketplace::AWS {
                listed_aws.push(listing.product_code.as_str());
                match &config.aws {
                    None => problems.push(format!(
                        "product {} is listed on aws but there is no [aws] section",
                        product.id
                    )),
                    Some(aws) if aws.product(&listing.product_code).is_none() => {
                        problems.push(format!(
                            "product {} is listed on aws as {} but [[aws.products]] has no such product_code",
                            product.id, listing.product_code
                        ))
                    }
                    Some(_) => {}
                }
            } else if *m == Marketplace::AZURE && config.azure.is_none() {
                problems.push(format!(
                    "product {} is listed on azure but there is no [azure] section",
                    product.id
                ));
            } else if m.as_str() == "gcp" {
                problems.extend(gcp_listing_problem(
                    config,
                    &product.id,
                    &listing.product_code,
                ));
            }
        }
    }
    if let Some(aws) = &config.aws {
        for p in &aws.products {
            if !listed_aws.contains(&p.product_code.as_str()) {
                problems.push(format!(
                    "[[aws.products]] {} is in no catalog product's listings: its buyers cannot be matched to plans and features",
                    p.product_code
                ));
            }
        }
    }
    if config.catalog.products.is_empty() {
        out.push(Diagnosis::warning(
            "catalog",
            "the catalog is empty: add [[catalog.products]] with listings, plans and features",
        ));
    } else if problems.is_empty() {
        out.push(Diagnosis::ok(
            "catalog",
            format!(
                "{} product(s); every listing matches the marketplace configuration",
                config.catalog.products.len()
            ),
        ));
    } else {
        for problem in problems {
            out.push(Diagnosis::failed("catalog", problem));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use marketlink_core::DiagnosisStatus;

    use super::*;

    fn host(s: &str) -> Reach {
        let url = url::Url::parse(s).unwrap();
        reach(&url.host().unwrap())
    }

    #[test]
    fn hosts_are_classified() {
        assert_eq!(host("http://127.0.0.1:8080"), Reach::Loopback);
        assert_eq!(host("http://localhost:8080"), Reach::Loopback);
        assert_eq!(host("http://[::1]:8080"), Reach::Loopback);
        assert_eq!(host("https://10.1.2.3"), Reach::Private);
        assert_eq!(host("https://192.168.0.10"), Reach::Private);
        assert_eq!(host("https://[fd00::1]"), Reach::Private);
        assert_eq!(host("https://marketlink"), Reach::Private);
        assert_eq!(host("https://billing.example.com"), Reach::Public);
        assert_eq!(host("https://203.0.113.9"), Reach::Public);
    }

    #[test]
    fn public_url_rules() {
        let status = |url: &str| {
            let mut config = Config::default();
            config.server.public_url = url.into();
            public_url(&config)[0].status
        };
        assert_eq!(status("https://billing.example.com"), DiagnosisStatus::Ok);
        assert_eq!(status("http://127.0.0.1:8080"), DiagnosisStatus::Warning);
        assert_eq!(status("https://10.0.0.5"), DiagnosisStatus::Warning);
        assert_eq!(
            status("http://billing.example.com"),
            DiagnosisStatus::Failed
        );
    }

    #[test]
    fn session_secret_is_required_on_https_only() {
        let mut config = Config::default();
        assert_eq!(secrets(&config)[0].status, DiagnosisStatus::Warning);
        config.server.public_url = "https://billing.example.com".into();
        assert_eq!(secrets(&config)[0].status, DiagnosisStatus::Failed);
    }

    #[test]
    fn catalog_listing_without_aws_product_fails() {
        let mut config = Config::load_over(
            Some(&crate::config::demo_base("127.0.0.1:9".parse().unwrap())),
            None,
        )
        .unwrap();
        // `marketlink demo` adds [azure] and [gcp] for its sandboxes at start-up.
        config.azure = Some(marketlink_azure::AzureConfig::new("t", "c", "s"));
        config.gcp = Some(marketlink_gcp::GcpConfig {
            provider_id: "DEMO-marketlink".into(),
            service_name: "marketlink.example.com".into(),
            ..Default::default()
        });
        assert!(
            catalog(&config)
                .iter()
                .all(|d| d.status == DiagnosisStatus::Ok)
        );
        let mut broken = config.clone();
        if let Some(aws) = broken.aws.as_mut() {
            aws.products
                .retain(|p| p.product_code != "mlsandboxclassic0000000001");
        }
        let findings = catalog(&broken);
        assert!(
            findings
                .iter()
                .any(|d| d.is_failure() && d.detail.contains("mlsandboxclassic0000000001")),
            "{findings:?}"
        );
        let mut renamed = config.clone();
        if let Some(gcp) = renamed.gcp.as_mut() {
            gcp.service_name = "other.example.com".into();
        }
        let findings = catalog(&renamed);
        assert!(
            findings
                .iter()
                .any(|d| d.is_failure() && d.detail.contains("service_name is other.example.com")),
            "{findings:?}"
        );
    }

    #[test]
    fn report_renders_one_line_per_check() {
        let findings = vec![
            Diagnosis::ok("database", "reachable"),
            Diagnosis::failed("aws.credentials", "wrong secret"),
        ];
        let report = DoctorReport {
            summary: DiagnosisSummary::of(&findings),
            findings,
        };
        let text = report.render();
        assert!(text.contains("ok    database         reachable"), "{text}");
        assert!(
            text.contains("FAIL  aws.credentials  wrong secret"),
            "{text}"
        );
        assert!(text.contains("1 ok, 0 warning(s), 1 failure(s)"));
        assert!(report.failed());
    }
}
