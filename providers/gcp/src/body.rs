//! Reading Google's answers: bounded, and an unreachable host classified once.

use marketlink_core::ProviderError;

/// No answer of the APIs we call comes near this; a larger one is refused unread.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    ProviderError::retryable(format!("Google API unreachable: {error}"))
}

/// Reads at most [`MAX_BODY`] bytes.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
) -> Result<Vec<u8>, ProviderError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(ProviderError::retryable(
            "Google answer larger than allowed",
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::retryable(
                "Google answer larger than allowed",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
