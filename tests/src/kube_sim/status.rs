//! Errors as the API server reports them: a `Status` object with a reason and a code.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::discovery::Resource;

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error answered as a `Status` object.
pub(crate) struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    /// `details` (`{"name", "group", "kind"}`) for errors about one object.
    details: Option<Value>,
}

impl ApiError {
    pub(crate) fn not_found(resource: Resource, name: &str) -> ApiError {
        ApiError {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", qualified(resource)),
            details: Some(details(resource, name)),
        }
    }

    pub(crate) fn already_exists(resource: Resource, name: &str) -> ApiError {
        ApiError {
            code: StatusCode::CONFLICT,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", qualified(resource)),
            details: Some(details(resource, name)),
        }
    }

    /// A stale `metadata.resourceVersion` (optimistic concurrency).
    pub(crate) fn conflict() -> ApiError {
        ApiError {
            code: StatusCode::CONFLICT,
            reason: "Conflict",
            message: "the object has been modified; please apply your changes to the latest \
                      version and try again"
                .to_owned(),
            details: None,
        }
    }

    pub(crate) fn no_route() -> ApiError {
        ApiError {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: "the server could not find the requested resource".to_owned(),
            details: None,
        }
    }

    pub(crate) fn method_not_allowed() -> ApiError {
        ApiError {
            code: StatusCode::METHOD_NOT_ALLOWED,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".to_owned(),
            details: None,
        }
    }

    pub(crate) fn bad_request(message: String) -> ApiError {
        ApiError {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message,
            details: None,
        }
    }

    pub(crate) fn invalid(message: String) -> ApiError {
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message,
            details: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = self.details {
            status["details"] = details;
        }
        json_response(self.code, &status)
    }
}

fn details(resource: Resource, name: &str) -> Value {
    let mut details = json!({"name": name, "kind": resource.plural()});
    if let Some((group, _)) = resource.api_version().split_once('/') {
        details["group"] = json!(group);
    }
    details
}

/// `pods`, `deployments.apps`: how the API server names a resource in messages.
fn qualified(resource: Resource) -> String {
    match resource.api_version().split_once('/') {
        Some((group, _)) => format!("{}.{group}", resource.plural()),
        None => resource.plural().to_owned(),
    }
}
