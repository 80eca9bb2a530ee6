//! [`ApiError`]: how the dev API answers other than 200, shared by its HTTP side
//! ([`super::api`]) and its routes ([`super::resources`]).

use hyper::StatusCode;

/// An answer other than 200: the status and the message for `{"error": {"message"}}`.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl From<super::store::StoreError> for ApiError {
    fn from(e: super::store::StoreError) -> Self {
        tracing::error!(error = %e, "dev API: store failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the dev store failed; see berth dev's log")
    }
}
