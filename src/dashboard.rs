//! The web dashboard: plain HTML, CSS and ES modules from `dashboard/`, embedded in the binary at
//! compile time (`rust-embed`, also in debug builds), served at `/`. No CDN, no Node, no build
//! step: `cargo build` is all the set-up there is.
//!
//! - `/` and any unknown path outside the API prefixes (`/api`, `/v1`, `/health`, `/metrics`)
//!   answer `index.html`: the app routes by URL hash, and a bookmarked deep link still loads it.
//! - `/assets/…` are the embedded files with their content type, `Cache-Control: no-cache` (the
//!   names carry no hash, so a browser must revalidate) and an `ETag` from the embedded SHA-256, so
//!   revalidation is a 304 without a body.
//! - `security_headers` puts the Content-Security-Policy (no inline scripts or styles, no framing)
//!   and `X-Content-Type-Options: nosniff` on every response outside `/v1`.

use axum::{
    Router,
    body::Body,
    extract::{OriginalUri, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "dashboard/"]
struct Assets;

/// The dashboard's policy: only this origin's scripts, styles, images and connections (the
/// WebSocket included); no inline code, no plugins, never inside a frame.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Path prefixes that belong to the API, never to the single-page app.
const RESERVED: [&str; 4] = ["/api", "/v1", "/health", "/metrics"];

/// Stateless, so it merges into any router (`server::router` merges it beside `/api` and `/v1`).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .fallback(spa_fallback)
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&format!("assets/{path}"), &headers)
}

/// Unknown paths: `index.html` for page loads, a plain 404 under the API prefixes.
async fn spa_fallback(OriginalUri(original): OriginalUri, req: Request) -> Response {
    let path = original.path();
    let reserved = RESERVED
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if reserved || !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return (StatusCode::NOT_FOUND, "Not found\n").into_response();
    }
    serve("index.html", req.headers())
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "Not found\n").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(file.data));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A layer on every route but the `/v1` API's, which only SDKs read (`server::router`, inside the
/// request-id and trace layers): security headers. A handler that set its own policy (the SVG
/// charts) keeps it.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_module_is_embedded_with_a_content_type() {
        let files: Vec<String> = Assets::iter().map(|f| f.into_owned()).collect();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        assert!(files.iter().any(|f| f == "assets/app.js"), "{files:?}");
        for f in &files {
            assert_ne!(
                content_type(f),
                "application/octet-stream",
                "{f} has no content type"
            );
        }
    }

    use axum::{body::to_bytes, middleware::from_fn};
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let app: Router = routes().layer(from_fn(security_headers));
        let mut req = Request::builder().uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_the_app_with_types_cache_headers_and_policy() {
        let (status, h, body) = get("/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(body.contains("/assets/app.js"));
        let csp = h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

        let (status, h, _) = get("/assets/app.js", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        let (_, h2, _) = get("/assets/app.css", &[]).await;
        assert_eq!(h2[header::CONTENT_TYPE], "text/css; charset=utf-8");

        // Revalidation by ETag.
        let etag = h[header::ETAG].to_str().unwrap_or_default().to_string();
        let (status, _, body) = get("/assets/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_load_the_app_but_not_under_api_prefixes() {
        let (status, h, body) = get("/keys/some/deep/link", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(body.contains("<div id=\"app\""));
        for path in [
            "/api/nope",
            "/v1/nope",
            "/health/x",
            "/metrics",
            "/assets/missing.js",
        ] {
            let (status, _, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(!body.contains("<html"), "{path}");
        }
    }

    /// ` onclick=`, ` onload =`…
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name > 0 && rest[name..].trim_start().starts_with('=')
        })
    }

    /// The CSP forbids inline code, so the markup must have none: no `<script>` without `src`,
    /// no `style=` attributes or `<style>` blocks, no `on…=` handlers.
    #[test]
    fn no_inline_scripts_or_styles() {
        for f in Assets::iter() {
            if !(f.ends_with(".html") || f.ends_with(".js")) {
                continue;
            }
            let Some(file) = Assets::get(&f) else {
                continue;
            };
            let text = String::from_utf8_lossy(&file.data).to_lowercase();
            if f.ends_with(".html") {
                for (i, _) in text.match_indices("<script") {
                    let tag = &text[i..text[i..].find('>').map_or(text.len(), |e| i + e)];
                    assert!(tag.contains(" src="), "{f}: inline <script>");
                }
                assert!(!text.contains("<style"), "{f}: inline <style>");
                assert!(!text.contains(" style="), "{f}: style attribute");
                assert!(!has_inline_handler(&text), "{f}: inline event handler");
            } else {
                assert!(!text.contains("innerhtml"), "{f}: innerHTML");
                assert!(!text.contains(".style."), "{f}: inline style");
                assert!(!text.contains("setattribute('style'"), "{f}: inline style");
            }
        }
    }
}
