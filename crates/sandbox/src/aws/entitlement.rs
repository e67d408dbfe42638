//! AWSMPEntitlementService.GetEntitlements (RPC v2 CBOR and awsJson1.1).

use serde_json::{Value, json};

use super::{
    AwsSandbox, DimensionKind, IdentityMode, ProductConfig,
    input::{opt_i64, opt_str},
    state::Agreement,
    wire::AwsError,
};

fn invalid(msg: impl Into<String>) -> AwsError {
    AwsError::bad_request("InvalidParameterException", msg)
}

/// `Filter`: name → accepted values, each name at most once.
type Filters = Vec<(String, Vec<String>)>;

impl AwsSandbox {
    pub(super) fn entitlement(&self, op: &str, input: &Value) -> Result<(Value, String), AwsError> {
        if op != "GetEntitlements" {
            return Err(AwsError::bad_request(
                "UnknownOperationException",
                format!("Unknown operation {op}"),
            ));
        }
        let product_code = opt_str(input, "ProductCode")?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("ProductCode is required"))?;
        let product = self
            .config
            .product(product_code)
            .ok_or_else(|| invalid(format!("Product code {product_code} is not valid")))?;
        let max = opt_i64(input, "MaxResults")?.unwrap_or(25);
        if !(1..=25).contains(&max) {
            return Err(invalid("MaxResults must be between 1 and 25"));
        }
        let offset = match opt_str(input, "NextToken")? {
            None => 0usize,
            Some(t) => t
                .strip_prefix("sandbox-page-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| invalid("NextToken is not valid"))?,
        };
        let filters = parse_filters(input)?;
        let all = self.contract_entitlements(product, &filters);
        let total = all.len();
        let page: Vec<Value> = all.into_iter().skip(offset).take(max as usize).collect();
        let next = offset + page.len();
        let next_token = (next < total).then(|| format!("sandbox-page-{next}"));
        let summary = format!(
            "{product_code}: {} of {total} entitlements (offset {offset})",
            page.len()
        );
        Ok((
            json!({"Entitlements": page, "NextToken": next_token}),
            summary,
        ))
    }

    /// Every contract-dimension entitlement of the product's live agreements that passes the
    /// filters, in agreement order. Classic listings also name the CustomerIdentifier, whatever
    /// the filter (LICENSE_ARN, CUSTOMER_AWS_ACCOUNT_ID): the Entitlement model returns both
    /// identities.
    fn contract_entitlements(&self, product: &ProductConfig, filters: &Filters) -> Vec<Value> {
        let st = self.lock();
        let mut all = Vec::new();
        for ag in st.agreements.values() {
            // Live agreements only: not yet ended, and not superseded by a renewal or
            // replacement (whose own agreement carries the entitlements now).
            if ag.product_code != product.product_code || !ag.meterable() {
                continue;
            }
            for (dim, qty) in &ag.quantities {
                let is_contract = product
                    .dimension(dim)
                    .is_some_and(|d| d.kind == DimensionKind::Contract);
                if !is_contract || !passes(filters, ag, dim) {
                    continue;
                }
                let expiration = ag.end_time.or(ag.trial_end_time);
                let classic = product.identity_mode == IdentityMode::Classic;
                all.push(json!({
                    "ProductCode": product.product_code,
                    "Dimension": dim,
                    "CustomerIdentifier": if classic { Some(&ag.customer_identifier) } else { None },
                    "CustomerAWSAccountId": ag.buyer_account_id,
                    "LicenseArn": ag.license_arn,
                    "Value": {"IntegerValue": qty},
                    "ExpirationDate": expiration.map(|e| e.unix_timestamp() as f64),
                }));
            }
        }
        all
    }
}

fn parse_filters(input: &Value) -> Result<Filters, AwsError> {
    let mut filters: Filters = Vec::new();
    if let Some(f) = input.get("Filter").filter(|v| !v.is_null()) {
        let f = f
            .as_object()
            .ok_or_else(|| AwsError::serialization("Filter must be a map"))?;
        for (name, values) in f {
            if !matches!(
                name.as_str(),
                "CUSTOMER_IDENTIFIER" | "CUSTOMER_AWS_ACCOUNT_ID" | "LICENSE_ARN" | "DIMENSION"
            ) {
                return Err(invalid(format!("Unknown filter {name}")));
            }
            let values: Vec<String> = values
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| invalid(format!("Filter {name} needs at least one value")))?
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| AwsError::serialization("filter values must be strings"))?;
            filters.push((name.clone(), values));
        }
    }
    if filters.iter().any(|(n, _)| n == "CUSTOMER_IDENTIFIER")
        && filters.iter().any(|(n, _)| n == "CUSTOMER_AWS_ACCOUNT_ID")
    {
        return Err(invalid(
            "CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID filters are mutually exclusive",
        ));
    }
    Ok(filters)
}

/// Whether the entitlement of `ag` on `dim` matches every filter (any of a filter's values).
fn passes(filters: &Filters, ag: &Agreement, dim: &str) -> bool {
    filters.iter().all(|(name, values)| {
        let field = match name.as_str() {
            "CUSTOMER_IDENTIFIER" => ag.customer_identifier.as_str(),
            "CUSTOMER_AWS_ACCOUNT_ID" => ag.buyer_account_id.as_str(),
            "LICENSE_ARN" => ag.license_arn.as_str(),
            _ => dim,
        };
        values.iter().any(|v| v == field)
    })
}
