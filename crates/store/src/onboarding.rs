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

impl Row {
    fn into_request(self) -> Result<OnboardingRequest, StoreError> {
        Ok(OnboardingRequest {
            id: self.id,
            name: self.name,
            email: self.email,
            company: self.company,
            message: self.message,
            purchase: self.purchase.0,
            status: self.status,
            created_at: from_millis(self.created_at)?,
        })
    }
}

/// An operator's answer to an open request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnboardingDecision {
    /// The requester may finish the set-up with the link whose token hashes to `link_hash`,
    /// until `expires_at`.
    Approved {
        link_hash: String,
        expires_at: OffsetDateTime,
    },
    Declined {
        reason: String,
    },
}

const COLUMNS: &str = "id, name, email, company, message, purchase, status, created_at";

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
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM onboarding_requests WHERE status = $1 \
                 ORDER BY id DESC LIMIT $2"
            ))
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Row::into_request).collect()
    }

    /// Records an operator's decision on request `id`; only an open request can be decided
    /// (`NotFound` otherwise: decided already, by someone else too, or no such request).
    pub async fn decide_onboarding_request(
        &self,
        id: Uuid,
        decision: &OnboardingDecision,
        decided_by: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (status, link_hash, expires_at, note) = match decision {
            OnboardingDecision::Approved {
                link_hash,
                expires_at,
            } => (
                "approved",
                Some(link_hash.as_str()),
                Some(millis(*expires_at)),
                None,
            ),
            OnboardingDecision::Declined { reason } => {
                ("declined", None, None, Some(reason.as_str()))
            }
        };
        let decided = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE onboarding_requests SET status = $1, approval_hash = $2, \
                 approval_expires_at = $3, decision_note = $4, decided_by = $5, decided_at = $6 \
                 WHERE id = $7 AND status = 'open'",
            )
            .bind(status)
            .bind(link_hash)
            .bind(expires_at)
            .bind(note)
            .bind(decided_by)
            .bind(millis(now))
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if decided == 0 {
            return Err(StoreError::NotFound("open set-up request"));
        }
        Ok(())
    }

    /// The approved request whose link token hashes to `link_hash`, while the link is valid.
    pub async fn approved_onboarding_request(
        &self,
        link_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<OnboardingRequest>, StoreError> {
        let row: Option<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM onboarding_requests WHERE approval_hash = $1 \
                 AND status = 'approved' AND approval_expires_at > $2"
            ))
            .bind(link_hash)
            .bind(millis(now))
            .fetch_optional(pool)
            .await?
        });
        row.map(Row::into_request).transpose()
    }
}
