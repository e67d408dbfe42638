//! `aws.agreement-marketplace` EventBridge events, as an EventBridge rule delivers them to an
//! SQS target (the SQS message body is the whole event). Shapes follow the seller guide's
//! examples (../shared/specs/aws-eventbridge.md §3).
//!
//! Proposer or Manufacturer: when the seller is both proposer and manufacturer (public and
//! direct private offers) AWS sends only the `- Proposer` variant of the Purchase Agreement
//! events; for a channel partner private offer the seller is only the manufacturer and gets
//! the `- Manufacturer` variant, with `resaleAuthorization.id`. License events exist only as
//! `- Manufacturer` (spec §1). One rule per account routes every product's events (spec §5),
//! so all products share the EventBridge queue.

use serde_json::{Value, json};

use super::{AwsSandbox, ProductConfig, state::Agreement};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Amended,
    Ended,
    LicenseUpdated,
    LicenseDeprovisioned,
}

impl EventKind {
    fn base(self) -> &'static str {
        match self {
            EventKind::Created => "Purchase Agreement Created",
            EventKind::Amended => "Purchase Agreement Amended",
            EventKind::Ended => "Purchase Agreement Ended",
            EventKind::LicenseUpdated => "License Updated",
            EventKind::LicenseDeprovisioned => "License Deprovisioned",
        }
    }

    fn is_license(self) -> bool {
        matches!(
            self,
            EventKind::LicenseUpdated | EventKind::LicenseDeprovisioned
        )
    }

    /// The detail-type the seller receives for this agreement.
    pub fn detail_type(self, ag: &Agreement) -> String {
        let role = if self.is_license() || ag.channel_partner.is_some() {
            "Manufacturer"
        } else {
            "Proposer"
        };
        format!("{} - {role}", self.base())
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// `detail.agreement`: the NEW / RENEW / REPLACE / AMEND block with its times, the status on
/// Ended (CANCELLED, EXPIRED, TERMINATED, or RENEWED / REPLACED for a superseded agreement),
/// the id alone on License events.
fn agreement_block(kind: EventKind, ag: &Agreement) -> Value {
    match kind {
        EventKind::Created | EventKind::Amended => {
            let intent = match (kind, &ag.predecessor) {
                (EventKind::Amended, _) => "AMEND",
                (_, Some(prev)) => prev.change.intent(),
                (_, None) => "NEW",
            };
            let mut block = json!({
                "id": ag.agreement_id,
                "intent": intent,
                "status": "ACTIVE",
                "acceptanceTime": rfc3339(ag.created_at),
                "startTime": rfc3339(ag.start_time),
                "endTime": ag.end_time.map(rfc3339),
            });
            if let (EventKind::Created, Some(prev)) = (kind, &ag.predecessor) {
                block["previousAgreementId"] = json!(prev.agreement_id);
            }
            block
        }
        EventKind::Ended => json!({"id": ag.agreement_id, "status": ag.agreement_status()}),
        EventKind::LicenseUpdated | EventKind::LicenseDeprovisioned => {
            json!({"id": ag.agreement_id})
        }
    }
}

pub fn event(sb: &AwsSandbox, kind: EventKind, ag: &Agreement, product: &ProductConfig) -> Value {
    let cfg = sb.config();
    let mut detail = json!({
        "requestId": uuid::Uuid::new_v4().to_string(),
        "catalog": "AWSMarketplace",
        "agreement": agreement_block(kind, ag),
        "acceptor": {"accountId": ag.buyer_account_id},
        "proposer": {"accountId": ag.proposer_account_id(&cfg.seller_account_id)},
        "offer": {"id": ag.offer_id},
    });
    if kind.is_license() {
        detail["product"] = json!({"code": product.product_code, "id": product.product_id});
        detail["license"] = json!({"arn": ag.license_arn});
    } else {
        // Populated for a channel partner private offer, null for a direct offer.
        detail["resaleAuthorization"] = match &ag.channel_partner {
            Some(cp) => json!({"id": cp.resale_authorization_id}),
            None => Value::Null,
        };
        // The RENEW example carries the product (id and title).
        if kind == EventKind::Created && ag.predecessor.is_some() {
            detail["product"] = json!({"id": product.product_id, "title": product.title});
        }
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": kind.detail_type(ag),
        "source": "aws.agreement-marketplace",
        "account": cfg.seller_account_id,
        "time": rfc3339(sb.now()),
        "region": "us-east-1",
        "resources": [format!("arn:aws:aws-marketplace::aws:agreement:{}", ag.agreement_id)],
        "detail": detail,
    })
}

impl AwsSandbox {
    /// Puts the `kind` event of `agreement` on the EventBridge queue.
    pub(super) fn eventbridge_publish(
        &self,
        kind: EventKind,
        agreement: &Agreement,
        product: &ProductConfig,
    ) {
        let event = event(self, kind, agreement, product);
        let now = self.now();
        let mut st = self.lock();
        st.push_queue_message(
            &self.config.eventbridge_queue_name,
            event.to_string(),
            now,
            time::Duration::ZERO,
        );
        self.persist(&st);
        drop(st);
        self.log_call(
            "events",
            "PutEvents",
            200,
            format!(
                "{} for {}",
                kind.detail_type(agreement),
                agreement.agreement_id
            ),
        );
    }
}
