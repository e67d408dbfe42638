//! AWSMPCommerceService_v20200301: DescribeAgreement and GetAgreementTerms.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    AwsSandbox, DimensionKind, OfferKind,
    input::{opt_i64, opt_str},
    state::Agreement,
    wire::AwsError,
};

fn validation(msg: impl Into<String>) -> AwsError {
    AwsError::bad_request("ValidationException", msg)
}

fn ts(t: time::OffsetDateTime) -> f64 {
    t.unix_timestamp() as f64
}

fn agreement_id_of(input: &Value) -> Result<&str, AwsError> {
    let id = opt_str(input, "agreementId")?.ok_or_else(|| validation("agreementId is required"))?;
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/' || b == b'-');
    if !ok {
        return Err(validation(format!(
            "agreementId {id:?} must match [A-Za-z0-9_/-]+ (1 to 64 characters)"
        )));
    }
    Ok(id)
}

impl AwsSandbox {
    pub(super) fn agreement_op(
        &self,
        op: &str,
        input: &Value,
    ) -> Result<(Value, String), AwsError> {
        match op {
            "DescribeAgreement" => {
                let ag = self.find_agreement(agreement_id_of(input)?)?;
                let summary = format!("{} {}", ag.agreement_id, ag.agreement_status());
                Ok((self.describe(&ag), summary))
            }
            "GetAgreementTerms" => {
                let ag = self.find_agreement(agreement_id_of(input)?)?;
                let max = opt_i64(input, "maxResults")?.unwrap_or(50);
                if !(1..=50).contains(&max) {
                    return Err(validation("maxResults must be between 1 and 50"));
                }
                let offset = match opt_str(input, "nextToken")? {
                    None => 0usize,
                    Some(t) => t
                        .strip_prefix("page-")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| validation("nextToken is not valid"))?,
                };
                let terms = self.terms(&ag);
                let total = terms.len();
                let page: Vec<Value> = terms.into_iter().skip(offset).take(max as usize).collect();
                let next = offset + page.len();
                let summary = format!("{}: {} terms", ag.agreement_id, page.len());
                Ok((
                    json!({"acceptedTerms": page, "nextToken": (next < total).then(|| format!("page-{next}"))}),
                    summary,
                ))
            }
            _ => Err(AwsError::bad_request(
                "UnknownOperationException",
                format!("Unknown operation {op}"),
            )),
        }
    }

    fn find_agreement(&self, id: &str) -> Result<Agreement, AwsError> {
        self.agreement(id).ok_or_else(|| {
            AwsError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                format!("Agreement {id} not found"),
            )
        })
    }

    fn describe(&self, ag: &Agreement) -> Value {
        let product_id = self
            .config
            .product(&ag.product_code)
            .map(|p| p.product_id.clone())
            .unwrap_or_default();
        let end_time_behavior = ag
            .end_time
            .filter(|_| ag.agreement_status() == "ACTIVE")
            .map(|_| json!({"type": "EXPIRE", "reasonCode": "NO_RENEWAL_TERM"}));
        json!({
            "agreementId": ag.agreement_id,
            "acceptor": {"accountId": ag.buyer_account_id},
            "proposer": {"accountId": self.config.seller_account_id},
            "startTime": ts(ag.start_time),
            "endTime": ag.end_time.map(ts),
            "acceptanceTime": ts(ag.created_at),
            "agreementType": "PurchaseAgreement",
            "estimatedCharges": {"currencyCode": "USD", "agreementValue": self.contract_value(ag)},
            "proposalSummary": {
                "offerId": ag.offer_id,
                "resources": [{"id": product_id, "type": "SaaSProduct"}],
            },
            "status": ag.agreement_status(),
            "initialAgreementId": ag.agreement_id,
            "endTimeBehavior": end_time_behavior,
            "freeTrialSummary": ag.trial_end_time.map(|t| json!({"trialEndTime": ts(t)})),
        })
    }

    fn contract_value(&self, ag: &Agreement) -> String {
        let Some(product) = self.config.product(&ag.product_code) else {
            return "0.00".into();
        };
        if !matches!(
            ag.offer_kind,
            OfferKind::Contract | OfferKind::ContractWithConsumption
        ) {
            return "0.00".into();
        }
        // Cents, exact: price strings have at most 2 decimals for contract dimensions.
        let mut cents: i128 = 0;
        for (dim, qty) in &ag.quantities {
            if let Some(d) = product.dimension(dim) {
                let (i, f) = d.price.split_once('.').unwrap_or((&d.price, "0"));
                let f = format!("{f:0<2}");
                let unit =
                    i.parse::<i128>().unwrap_or(0) * 100 + f[..2].parse::<i128>().unwrap_or(0);
                cents += unit * i128::from(*qty);
            }
        }
        format!("{}.{:02}", cents / 100, cents % 100)
    }

    fn terms(&self, ag: &Agreement) -> Vec<Value> {
        let Some(product) = self.config.product(&ag.product_code) else {
            return Vec::new();
        };
        let offer = product.offers.iter().find(|o| o.id == ag.offer_id);
        let mut terms = vec![
            json!({"legalTerm": {"type": "LegalTerm", "id": format!("term-legal-{}", ag.offer_id),
                "documents": [{"type": "StandardEula", "url": "https://example.com/eula", "version": "2026-01-01"}]}}),
            json!({"supportTerm": {"type": "SupportTerm", "id": format!("term-support-{}", ag.offer_id),
                "refundPolicy": "No refunds in the sandbox."}}),
        ];
        let metered: Vec<Value> = product
            .dimensions
            .iter()
            .filter(|d| d.kind == DimensionKind::Metered)
            .map(|d| json!({"dimensionKey": d.name, "price": d.price}))
            .collect();
        let contract_card: Vec<Value> = product
            .dimensions
            .iter()
            .filter(|d| d.kind == DimensionKind::Contract)
            .map(|d| json!({"dimensionKey": d.name, "price": d.price}))
            .collect();
        let usage_term = json!({"usageBasedPricingTerm": {"type": "UsageBasedPricingTerm",
            "id": format!("term-usage-{}", ag.offer_id), "currencyCode": "USD",
            "rateCards": [{"rateCard": metered}]}});
        match ag.offer_kind {
            OfferKind::Subscription => terms.push(usage_term),
            OfferKind::Contract | OfferKind::ContractWithConsumption => {
                let months = offer.and_then(|o| o.duration_months).unwrap_or(12);
                let duration = format!("P{months}M");
                let dims: Vec<Value> = ag
                    .quantities
                    .iter()
                    .map(|(k, v)| json!({"dimensionKey": k, "dimensionValue": v}))
                    .collect();
                terms.push(json!({"configurableUpfrontPricingTerm": {
                    "type": "ConfigurableUpfrontPricingTerm", "id": format!("term-upfront-{}", ag.offer_id),
                    "currencyCode": "USD",
                    "rateCards": [{"selector": {"type": "Duration", "value": duration},
                        "constraints": {"multipleDimensionSelection": "Allowed", "quantityConfiguration": "Allowed"},
                        "rateCard": contract_card}],
                    "configuration": {"selectorValue": duration, "dimensions": dims}}}));
                terms.push(json!({"validityTerm": {"type": "ValidityTerm", "id": format!("term-validity-{}", ag.offer_id),
                    "agreementDuration": duration}}));
                if ag.offer_kind == OfferKind::ContractWithConsumption {
                    terms.push(usage_term);
                }
            }
            OfferKind::FreeTrial => {
                let days = offer.and_then(|o| o.trial_days).unwrap_or(30);
                let grants: Vec<Value> = ag
                    .quantities
                    .iter()
                    .map(|(k, v)| json!({"dimensionKey": k, "maxQuantity": v}))
                    .collect();
                terms.push(json!({"freeTrialPricingTerm": {"type": "FreeTrialPricingTerm",
                    "id": format!("term-trial-{}", ag.offer_id), "duration": format!("P{days}D"), "grants": grants}}));
                terms.push(usage_term);
            }
        }
        terms
    }
}
