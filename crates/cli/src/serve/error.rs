//! The API's error shape: `{"error": "<message>", "code": "RUN_NOT_FOUND", "details": {...}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer: status, machine code, human message naming the input and what is valid.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn run_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "RUN_NOT_FOUND",
            format!("run {id} not found; GET /api/v1/runs lists the runs"),
        )
        .details(json!({ "run": id }))
    }

    pub fn task_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "TASK_NOT_FOUND",
            format!("task `{name}` not found; GET /api/v1/tasks lists the tasks"),
        )
        .details(json!({ "task": name }))
    }

    /// A storage error, mapped to the status a client can act on.
    pub fn storage(e: sequential_adaptor::Error) -> Self {
        use sequential_adaptor::Error as E;
        match e {
            E::NotFound { what } => Self::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("{what} not found"),
            ),
            E::Conflict { what } => Self::conflict("CONFLICT", format!("conflict: {what}")),
            E::Fenced { .. } => Self::conflict("FENCED", e.to_string()),
            E::Invalid { .. } => Self::bad_request(e.to_string()),
            E::Unsupported { .. } => {
                Self::new(StatusCode::NOT_IMPLEMENTED, "UNSUPPORTED", e.to_string())
            }
            other => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "STORAGE_UNAVAILABLE",
                other.to_string(),
            ),
        }
    }

    /// An engine error: storage errors as [`ApiError::storage`], refused operations as 409.
    pub fn engine(e: sequential_tasker_engine::Error) -> Self {
        use sequential_tasker_engine::Error as E;
        match e {
            E::Storage(s) => Self::storage(s),
            E::Invalid { input, expected } => Self::conflict(
                "INVALID_STATE",
                format!("invalid {input}: expected {expected}"),
            ),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                other.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if !self.details.is_null() {
            body["details"] = self.details;
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // the rest of the body was not read: this connection cannot carry another request
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}
