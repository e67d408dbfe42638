//! Manual onboarding requests: the buyer asked to be set up by the vendor's team.

use marketlink_core::ResolvedPurchase;
use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError, from_millis, millis, on_pool};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnboardingRequest {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub company: Option<String>,
    pub message: Option<String>,
    /// The purchase as the marketplace resolved it (never as the browser stated it).
    pub purchase: ResolvedPurchase,
    /// `open` until the vendor's team has set the account up.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    email: String,
    company: Option<String>,
    message: Option<String>,
    purchase: Json<ResolvedPurchase>,
    status: String,
    created_at: i64,
}

impl Store {
    pub async fn create_onboarding_request(
        &self,
        request: &OnboardingRequest,
    ) -> Result<(), StoreError> {
        let external = &request.purchase.subscription;
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO onboarding_requests (id, marketplace, external_id, product_code, \
                 customer_id, name, email, company, message, purchase, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(request.id)
            .bind(external.marketplace.as_str())
            .bind(&external.external_id)
            .bind(&external.product_code)
            .bind(&external.customer_id)
            .bind(&request.name)
            .bind(&request.email)
            .bind(&request.company)
            .bind(&request.message)
            .bind(Json(&request.purchase))
            .bind(&request.status)
            .bind(millis(request.created_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Requests with `status`, newest first.
    pub async fn list_onboarding_requests(
        &self,
        status: &str,
        limit: u32,
    ) -> Result<Vec<OnboardingRequest>, StoreError> {
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, email, company, message, purchase, status, created_at \
                 FROM onboarding_requests WHERE status = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(OnboardingRequest {
                    id: row.id,
                    name: row.name,
                    email: row.email,
                    company: row.company,
                    message: row.message,
                    purchase: row.purchase.0,
                    status: row.status,
                    created_at: from_millis(row.created_at)?,
                })
            })
            .collect()
    }
}
