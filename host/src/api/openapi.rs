//! `GET /api/openapi.json`: the API described in OpenAPI 3.1 (`openapi.json` beside this
//! file is the source; a test checks every route in it is served).

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Serves the document.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
