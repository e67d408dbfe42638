//! `aws.agreement-marketplace` EventBridge events, as an EventBridge rule delivers them to an
//! SQS target (the SQS message body is the whole event).

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
    /// The sandbox seller is the manufacturer (ISV), so events carry `- Manufacturer`.
    pub fn detail_type(self) -> &'static str {
        match self {
            EventKind::Created => "Purchase Agreement Created - Manufacturer",
            EventKind::Amended => "Purchase Agreement Amended - Manufacturer",
            EventKind::Ended => "Purchase Agreement Ended - Manufacturer",
            EventKind::LicenseUpdated => "License Updated - Manufacturer",
            EventKind::LicenseDeprovisioned => "License Deprovisioned - Manufacturer",
        }
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

pub fn event(sb: &AwsSandbox, kind: EventKind, ag: &Agreement, product: &ProductConfig) -> Value {
    let cfg = sb.config();
    let acceptor = json!({"accountId": ag.buyer_account_id});
    let proposer = json!({"accountId": cfg.seller_account_id});
    let offer = json!({"id": ag.offer_id});
    let agreement = match kind {
        EventKind::Created | EventKind::Amended => json!({
            "id": ag.agreement_id,
            "intent": if kind == EventKind::Created { "NEW" } else { "AMEND" },
            "status": "ACTIVE",
            "acceptanceTime": rfc3339(ag.created_at),
            "startTime": rfc3339(ag.start_time),
            "endTime": ag.end_time.map(rfc3339),
        }),
        EventKind::Ended => json!({"id": ag.agreement_id, "status": ag.agreement_status()}),
        EventKind::LicenseUpdated | EventKind::LicenseDeprovisioned => {
            json!({"id": ag.agreement_id})
        }
    };
    let mut detail = json!({
        "requestId": uuid::Uuid::new_v4().to_string(),
        "catalog": "AWSMarketplace",
        "agreement": agreement,
        "acceptor": acceptor,
        "proposer": proposer,
        "offer": offer,
    });
    if matches!(
        kind,
        EventKind::LicenseUpdated | EventKind::LicenseDeprovisioned
    ) {
        detail["product"] = json!({"code": product.product_code, "id": product.product_id});
        detail["license"] = json!({"arn": ag.license_arn});
    } else {
        detail["resaleAuthorization"] = Value::Null;
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": kind.detail_type(),
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
        st.push_queue_message(&self.config.eventbridge_queue_name, event.to_string(), now);
        self.persist(&st);
        drop(st);
        self.log_call(
            "events",
            "PutEvents",
            200,
            format!("{} for {}", kind.detail_type(), agreement.agreement_id),
        );
    }
}
