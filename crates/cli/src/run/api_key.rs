//! `marketlink api-key create|list|revoke`: the keys the vendor's product uses, stored hashed
//! and audited.

use anyhow::Context;
use marketlink_core::{Clock, Scope, SystemClock, TenantId};
use marketlink_store::{AuditEntry, Store};
use time::OffsetDateTime;

use super::database::open_store;
use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once.
    Create {
        /// What the key is for, e.g. "billing service".
        #[arg(long)]
        name: String,
        /// usage:write, entitlements:read or admin; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Limit the key to one tenant's data.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its prefix or id; it stops working within seconds.
    Revoke { key: String },
}

pub async fn api_key(config: Config, action: ApiKeyCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    store.migrate().await.context("migration failed")?;
    let now = SystemClock.now();
    match action {
        ApiKeyCommand::Create {
            name,
            scopes,
            tenant,
        } => create(&store, &name, &scopes, tenant, now).await?,
        ApiKeyCommand::List => list(&store).await?,
        ApiKeyCommand::Revoke { key } => revoke(&store, &key, now).await?,
    }
    store.close().await;
    Ok(())
}

/// Creates the key, prints it on stdout (the only time it is shown) and a reminder on stderr.
async fn create(
    store: &Store,
    name: &str,
    scopes: &[String],
    tenant: Option<String>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let scopes = scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    let tenant = match tenant {
        Some(raw) => Some(existing_tenant(store, &raw).await?),
        None => None,
    };
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key(name, scopes, tenant, now);
    store.create_api_key(&key, &hash).await?;
    store
        .audit(&AuditEntry::new(
            "cli",
            "api_key.create",
            Some(key.prefix.clone()),
            serde_json::json!({ "name": key.name, "scopes": key.scopes, "tenant_id": key.tenant_id }),
            now,
        ))
        .await?;
    println!("{plaintext}");
    eprintln!(
        "Store this key now: it is not shown again. Prefix {}.",
        key.prefix
    );
    Ok(())
}

async fn existing_tenant(store: &Store, raw: &str) -> anyhow::Result<TenantId> {
    let id: TenantId = raw
        .parse()
        .map_err(|_| anyhow::anyhow!("`{raw}` is not a tenant id"))?;
    store.get_tenant(id).await.context("no such tenant")?;
    Ok(id)
}

async fn list(store: &Store) -> anyhow::Result<()> {
    for key in store.list_api_keys().await? {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "{}  {:<24} {:<40} {}{}",
            key.prefix,
            key.name,
            scopes.join(","),
            key.tenant_id
                .map(|t| format!("tenant {t}"))
                .unwrap_or_else(|| "all tenants".into()),
            if key.revoked_at.is_some() {
                "  REVOKED"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn revoke(store: &Store, key: &str, now: OffsetDateTime) -> anyhow::Result<()> {
    let revoked = store.revoke_api_key(key, now).await?;
    store
        .audit(&AuditEntry::new(
            "cli",
            "api_key.revoke",
            Some(revoked.prefix.clone()),
            serde_json::json!({ "name": revoked.name }),
            now,
        ))
        .await?;
    println!("revoked {} ({})", revoked.prefix, revoked.name);
    Ok(())
}
