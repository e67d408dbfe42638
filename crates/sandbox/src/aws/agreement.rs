//! AWSMPCommerceService_v20200301: DescribeAgreement, GetAgreementTerms and
//! GetAgreementEntitlements (SearchAgreements: `search.rs`) (shapes and errors from the marketplace-agreement service model).
//!
//! The caller is always the seller. The seller is a party to its direct agreements (proposer);
//! for a channel partner private offer the proposer is the partner and the acceptor the buyer,
//! so the seller, only the manufacturer, is refused with AccessDeniedException: GetAgreementTerms
//! "obtains details about the terms in an agreement that you participated in as proposer or
//! acceptor" (model documentation) [DERIVED for the other two operations].

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    AwsSandbox, DimensionKind, OfferKind,
    input::{opt_i64, opt_str},
    state::{Agreement, SubscriptionState},
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

/// `EntitlementType` has only a pattern (`[A-Za-z:]+`) in the model and no documented values;
/// the sandbox says `License` [DERIVED].
const ENTITLEMENT_TYPE: &str = "License";

/// `maxResults`: 1 to 50 (MaxResults in the model), 50 when absent.
fn max_results(input: &Value) -> Result<usize, AwsError> {
    let max = opt_i64(input, "maxResults")?.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(validation("maxResults must be between 1 and 50"));
    }
    Ok(max as usize)
}

/// `nextToken` → offset (`page-<n>`, the sandbox's own tokens).
fn page_offset(input: &Value) -> Result<usize, AwsError> {
    match opt_str(input, "nextToken")? {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("page-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| validation("nextToken is not valid")),
    }
}

/// AgreementEntitlementStatus and its reason code from the agreement's lifecycle [DERIVED:
/// the model lists the values, not when each applies]: PENDING while AWS provisions,
/// PROVISIONED while the licence is live (also in the final metering window), FAILED when
/// payment failed (spec §4: `subscribe-fail` shows as FAILED / INVALID_PAYMENT_INSTRUMENT),
/// DEPROVISIONED once the licence is revoked or replaced by a new one.
fn entitlement_status(ag: &Agreement) -> (&'static str, Option<&'static str>) {
    if ag.license_ended {
        return ("DEPROVISIONED", Some("AGREEMENT_INACTIVE"));
    }
    match ag.state {
        SubscriptionState::Pending => ("PENDING", Some("PROVISIONING_IN_PROGRESS")),
        SubscriptionState::Subscribed | SubscriptionState::UnsubscribePending => {
            ("PROVISIONED", None)
        }
        SubscriptionState::Failed => ("FAILED", Some("INVALID_PAYMENT_INSTRUMENT")),
        SubscriptionState::Unsubscribed => ("DEPROVISIONED", Some("AGREEMENT_INACTIVE")),
    }
}

impl AwsSandbox {
    pub(super) fn agreement_op(
        &self,
        op: &str,
        input: &Value,
    ) -> Result<(Value, String), AwsError> {
        if op == "SearchAgreements" {
            return self.search_agreements(input);
        }
        let known = matches!(
            op,
            "DescribeAgreement" | "GetAgreementTerms" | "GetAgreementEntitlements"
        );
        if !known {
            return Err(AwsError::bad_request(
                "UnknownOperationException",
                format!("Unknown operation {op}"),
            ));
        }
        let ag = self.party_agreement(agreement_id_of(input)?)?;
        match op {
            "DescribeAgreement" => {
                let summary = format!("{} {}", ag.agreement_id, ag.agreement_status());
                Ok((self.describe(&ag), summary))
            }
            "GetAgreementTerms" => self.get_terms(&ag, input),
            _ => self.get_entitlements(&ag, input),
        }
    }

    fn get_terms(&self, ag: &Agreement, input: &Value) -> Result<(Value, String), AwsError> {
        let max = max_results(input)?;
        let offset = page_offset(input)?;
        let terms = self.terms(ag);
        let total = terms.len();
        let page: Vec<Value> = terms.into_iter().skip(offset).take(max).collect();
        let next = offset + page.len();
        let summary = format!("{}: {} terms", ag.agreement_id, page.len());
        Ok((
            json!({"acceptedTerms": page, "nextToken": (next < total).then(|| format!("page-{next}"))}),
            summary,
        ))
    }

    fn get_entitlements(&self, ag: &Agreement, input: &Value) -> Result<(Value, String), AwsError> {
        max_results(input)?;
        // One entitlement per agreement: any page after the first is empty.
        let entitlements = if page_offset(input)? == 0 {
            vec![self.agreement_entitlement(ag)]
        } else {
            Vec::new()
        };
        let summary = format!(
            "{}: {}",
            ag.agreement_id,
            entitlements
                .first()
                .and_then(|e| e["status"].as_str())
                .unwrap_or("none")
        );
        Ok((json!({"agreementEntitlements": entitlements}), summary))
    }

    /// The agreement, if it exists and the seller is a party to it.
    fn party_agreement(&self, id: &str) -> Result<Agreement, AwsError> {
        let ag = self.find_agreement(id)?;
        if ag.channel_partner.is_some() {
            return Err(AwsError::new(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                format!(
                    "User {} is not authorized to access agreement {id}",
                    self.config.seller_account_id
                ),
            ));
        }
        Ok(ag)
    }

    /// The agreement's one entitlement: the product's licence and where it stands.
    fn agreement_entitlement(&self, ag: &Agreement) -> Value {
        let product_id = self
            .config
            .product(&ag.product_code)
            .map(|p| p.product_id.clone())
            .unwrap_or_default();
        let (status, reason) = entitlement_status(ag);
        json!({
            "resource": {"id": product_id, "type": "SaaSProduct"},
            "type": ENTITLEMENT_TYPE,
            "status": status,
            "statusReasonCode": reason,
            "licenseArn": ag.license_arn,
        })
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
            "proposer": {"accountId": ag.proposer_account_id(&self.config.seller_account_id)},
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
            "initialAgreementId": ag.initial_agreement_id(),
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
