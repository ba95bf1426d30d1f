//! The web console (`/` and `/ui/…`): a static shell plus plain JavaScript, embedded in the
//! binary behind the default `console` feature. The shell carries no data and needs no token:
//! the script reads everything from the public `/api/v1` with `fetch()` and the bearer header,
//! so what the console can do, a script can do. Mounted outside the token check for that reason.
//!
//! Without the feature, `/` answers a short page saying how to get the console back.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

/// The console's routes: `/`, `/ui`, `/ui/{anything}` (the shell; the script routes by path)
/// and `/ui/assets/…`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(shell))
        .route("/ui", get(shell))
        .route("/ui/", get(shell))
        .route("/ui/assets/app.js", get(script))
        .route("/ui/assets/app.css", get(style))
        .route("/ui/{*path}", get(shell))
}

/// The same headers for every asset: nothing but this origin may be loaded or contacted.
fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, content_type),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ]
}

#[cfg(feature = "console")]
mod assets {
    pub const SHELL: &str = include_str!("../../console/index.html");
    pub const SCRIPT: &str = include_str!("../../console/app.js");
    pub const STYLE: &str = include_str!("../../console/app.css");
}

#[cfg(not(feature = "console"))]
mod assets {
    pub const SHELL: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>sequential-ecosystem</title><p>This build has no web console (built without the <code>console</code> feature). The API is at <a href=\"/api/v1/version\">/api/v1</a>; see docs/host-api.md.</p></html>";
    pub const SCRIPT: &str = "";
    pub const STYLE: &str = "";
}

async fn shell() -> impl IntoResponse {
    (headers("text/html; charset=utf-8"), assets::SHELL)
}

async fn script() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), assets::SCRIPT)
}

async fn style() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), assets::STYLE)
}
