//! Request dispatch: finds the service and protocol of a request (`X-Amz-Target` for the JSON
//! protocols, the path for Smithy RPC v2 CBOR), checks its SigV4 signature, applies an injected
//! error if one is due, runs the operation and logs the call.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use crate::{
    outage::{self, OutageKind},
    switch::{FaultKind, SIGNING_CERT},
};

use super::{
    AwsSandbox, sigv4, sns,
    state::InjectedError,
    wire::{self, AwsError, Protocol},
};

impl AwsSandbox {
    /// The error injected for `operation`, if one is due (each use counts down).
    fn take_injected(&self, operation: &str) -> Option<InjectedError> {
        let mut st = self.lock();
        let idx = st
            .injected
            .iter()
            .position(|(op, _, n)| *n > 0 && (op == operation || op == "*"))?;
        let entry = &mut st.injected[idx];
        entry.2 -= 1;
        let err = entry.1;
        if entry.2 == 0 {
            st.injected.remove(idx);
        }
        Some(err)
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of one HTTP request")]
    async fn handle(
        &self,
        protocol: Protocol,
        service: Service,
        operation: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        match self.outages.hit(self.now(), |op| op == operation) {
            Some(OutageKind::Reset) => {
                self.log_call(
                    service.name(),
                    operation,
                    0,
                    "outage: connection reset".into(),
                );
                return outage::reset();
            }
            Some(OutageKind::Unavailable) => {
                self.log_call(service.name(), operation, 503, "outage".into());
                return wire::error_response(protocol, &request_id, &unavailable());
            }
            None => {}
        }
        let switched = match self.switched(service, operation) {
            Ok(late) => late,
            Err(refused) => return refused.into_response(protocol, &request_id),
        };
        let result = self
            .handle_inner(
                protocol, service, operation, method, uri, headers, body, switched,
            )
            .await;
        let (response, status, summary) = match result {
            Ok((value, summary)) => (
                wire::success(protocol, &request_id, &wire::strip_nulls(value)),
                200,
                summary,
            ),
            Err(e) => (
                wire::error_response(protocol, &request_id, &e),
                e.status.as_u16(),
                format!("{}: {}", e.code, e.message),
            ),
        };
        self.log_call(service.name(), operation, status, summary);
        response
    }

    /// A fault of the scenario or the fault page that catches the call: refused (logged), or
    /// `Ok(Some(delay))` for an answer held back.
    fn switched(
        &self,
        service: Service,
        operation: &str,
    ) -> Result<Option<std::time::Duration>, Refused> {
        let Some(fault) = self.switches.hit(self.now(), |op| op == operation) else {
            return Ok(None);
        };
        let error = match fault.kind {
            FaultKind::Late => {
                return Ok(fault.late_ms.map(std::time::Duration::from_millis));
            }
            FaultKind::Reset => {
                self.log_call(
                    service.name(),
                    operation,
                    0,
                    "fault: connection reset".into(),
                );
                return Err(Refused::Reset);
            }
            FaultKind::Unavailable => unavailable(),
            // Validation keeps 429 off AWS; were it here, it is AWS's throttling.
            FaultKind::Throttling | FaultKind::TooManyRequests => {
                service.injected_error(InjectedError::Throttling)
            }
            FaultKind::ServerError => service.injected_error(InjectedError::Internal),
        };
        let summary = format!("fault: {}: {}", error.code, error.message);
        self.log_call(service.name(), operation, error.status.as_u16(), summary);
        Err(Refused::Error(error))
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of one HTTP request")]
    async fn handle_inner(
        &self,
        protocol: Protocol,
        service: Service,
        operation: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        switched_late: Option<std::time::Duration>,
    ) -> Result<(Value, String), AwsError> {
        let creds = sigv4::Credentials {
            access_key_id: &self.config.access_key_id,
            secret_access_key: &self.config.secret_access_key,
            region: &self.config.region,
            max_skew: self.config.sigv4_max_skew_secs.map(time::Duration::seconds),
        };
        let flavor = if service == Service::Sqs {
            sigv4::ErrorFlavor::Sqs
        } else {
            sigv4::ErrorFlavor::Marketplace
        };
        sigv4::verify(
            &creds,
            flavor,
            method,
            uri.path(),
            uri.query(),
            headers,
            body,
            self.now(),
        )?;
        let late = match self.take_injected(operation) {
            Some(InjectedError::LateAnswer(ms)) => Some(std::time::Duration::from_millis(ms)),
            Some(injected) => return Err(service.injected_error(injected)),
            None => switched_late,
        };
        let target = match protocol {
            wire::Protocol::RpcV2Cbor => "sandbox_cbor",
            _ => "sandbox_aws_json",
        };
        crate::fuzz_seed(target, body);
        let input = wire::parse_body(protocol, body)?;
        let result = match service {
            Service::Metering => self.metering(operation, &input),
            Service::Entitlement => self.entitlement(operation, &input),
            Service::Agreement => self.agreement_op(operation, &input),
            Service::Sqs => self.sqs(operation, &input).await,
        };
        if let Some(late) = late {
            // Logged now: a client that stops waiting drops this future, and the call log
            // must still show that the call took effect.
            let summary = format!("carried out; answer held back {} ms", late.as_millis());
            self.log_call(service.name(), operation, 0, summary);
            tokio::time::sleep(late).await;
        }
        result
    }
}

/// AWS's common 503 (see `crate::outage`).
fn unavailable() -> AwsError {
    AwsError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    )
}

/// A call a switched fault turned away.
enum Refused {
    Reset,
    Error(AwsError),
}

impl Refused {
    fn into_response(self, protocol: Protocol, request_id: &str) -> Response {
        match self {
            Refused::Reset => outage::reset(),
            Refused::Error(e) => wire::error_response(protocol, request_id, &e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Metering,
    Entitlement,
    Agreement,
    Sqs,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Metering => "metering",
            Service::Entitlement => "entitlement",
            Service::Agreement => "agreement",
            Service::Sqs => "sqs",
        }
    }

    fn injected_error(self, e: InjectedError) -> AwsError {
        match (self, e) {
            (Service::Sqs, InjectedError::Throttling) => {
                AwsError::bad_request("RequestThrottled", "Request is throttled.")
                    .with_query_error("RequestThrottled", "Sender")
            }
            (Service::Sqs, _) => AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            )
            .with_query_error("InternalError", "Receiver"),
            (Service::Agreement, InjectedError::Throttling) => AwsError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Rate exceeded",
            ),
            (Service::Agreement, _) => AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                "Internal server error",
            ),
            (_, InjectedError::Throttling) => {
                AwsError::bad_request("ThrottlingException", "Rate exceeded")
            }
            (Service::Metering, InjectedError::DisabledApi) => {
                AwsError::bad_request("DisabledApiException", "The API is disabled in the Region.")
            }
            _ => AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceErrorException",
                "An internal error has occurred. Retry your request.",
            ),
        }
    }
}

pub(super) async fn post_root(
    State(sb): State<Arc<AwsSandbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (prefix, op) = target.split_once('.').unwrap_or((target, ""));
    let (protocol, service) = match prefix {
        "AWSMPMeteringService" => (Protocol::AwsJson11, Service::Metering),
        "AWSMPEntitlementService" => (Protocol::AwsJson11, Service::Entitlement),
        "AWSMPCommerceService_v20200301" => (Protocol::AwsJson10, Service::Agreement),
        "AmazonSQS" => (Protocol::AwsJson10, Service::Sqs),
        _ => {
            let err = AwsError::bad_request(
                "UnknownOperationException",
                format!("Unknown X-Amz-Target {target:?}"),
            );
            sb.log_call("?", target, 400, err.message.clone());
            return wire::error_response(Protocol::AwsJson11, "-", &err);
        }
    };
    let op = op.to_owned();
    sb.handle(protocol, service, &op, &method, &uri, &headers, &body)
        .await
}

pub(super) async fn post_cbor(
    State(sb): State<Arc<AwsSandbox>>,
    Path((service_name, operation)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service = match service_name.as_str() {
        "AWSMPEntitlementService" => Service::Entitlement,
        "AWSMPCommerceService_v20200301" => Service::Agreement,
        _ => {
            let err = AwsError::new(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                format!("Unknown service {service_name}"),
            );
            return wire::error_response(Protocol::RpcV2Cbor, "-", &err);
        }
    };
    if headers.get("smithy-protocol").and_then(|v| v.to_str().ok()) != Some("rpc-v2-cbor") {
        let err = AwsError::bad_request(
            "SerializationException",
            "Missing or invalid smithy-protocol header (expected rpc-v2-cbor)",
        );
        return wire::error_response(Protocol::RpcV2Cbor, "-", &err);
    }
    sb.handle(
        Protocol::RpcV2Cbor,
        service,
        &operation,
        &method,
        &uri,
        &headers,
        &body,
    )
    .await
}

pub(super) async fn get_cert(State(sb): State<Arc<AwsSandbox>>) -> Response {
    match sb.outages.hit(sb.now(), |op| op == SIGNING_CERT) {
        Some(OutageKind::Reset) => return outage::reset(),
        Some(OutageKind::Unavailable) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
        None => {}
    }
    // A plain download: bare statuses [DERIVED, as for outages above].
    if let Some(fault) = sb.switches.hit(sb.now(), |op| op == SIGNING_CERT) {
        let status = match fault.kind {
            FaultKind::Reset => return outage::reset(),
            FaultKind::Late => {
                let ms = fault.late_ms.unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                None
            }
            FaultKind::ServerError => Some(StatusCode::INTERNAL_SERVER_ERROR),
            _ => Some(StatusCode::SERVICE_UNAVAILABLE),
        };
        if let Some(status) = status {
            return (status, status.canonical_reason().unwrap_or_default()).into_response();
        }
    }
    match sns::signer() {
        Ok(s) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/x-x509-ca-cert",
            )],
            s.cert_pem.clone(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
