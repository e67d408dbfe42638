//! azure_core's `HttpClient` over our reqwest client: the credential's requests go through the
//! same rustls stack and trusted CAs (`extra_ca_pem`, the sandbox's) as every API call, and
//! azure_core needs no reqwest of its own (its default features would pull another one).

use azure_core::{
    error::{Error, ErrorKind},
    http::{
        AsyncRawResponse, HttpClient, Request, StatusCode,
        headers::{HeaderName, HeaderValue, Headers},
        request::Body,
    },
};

#[derive(Debug)]
pub(super) struct ReqwestTransport(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let method = reqwest::Method::from_bytes(request.method().as_ref().as_bytes())
            .map_err(|e| Error::with_error(ErrorKind::Other, e, "unsupported HTTP method"))?;
        let mut builder = self.0.request(method, request.url().clone());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = match request.body() {
            Body::Bytes(bytes) => builder.body(bytes.clone()),
            #[allow(unreachable_patterns)]
            _ => {
                // Token requests are small forms; nothing here streams a body.
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streamed request bodies are not supported by marketlink's transport",
                ));
            }
        };
        let response = builder.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, e, "sending the token request")
        })?;
        let status = StatusCode::from(response.status().as_u16());
        let mut headers = Headers::new();
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                headers.insert(
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(value.to_owned()),
                );
            }
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::with_error(ErrorKind::Io, e, "reading the token response"))?;
        Ok(AsyncRawResponse::from_bytes(status, headers, body))
    }
}
