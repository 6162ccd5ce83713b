//! The board (the operators' web UI): `GET /` → `index.html`, `GET /board/{*path}` → the
//! file. Every file of `hub/board/` is compiled into the binary by `build.rs`, so a request
//! path is only ever a key of that table and can never reach the file system; an unknown
//! path is the API's 404 JSON.
//!
//! Each answer carries a strong ETag (SHA-256 of the bytes, computed once) and
//! `Cache-Control: no-cache`, so a browser revalidates every load and gets a 304 until the
//! hub is rebuilt with other files. The Content-Security-Policy allows only this hub as a
//! source: the board works offline in a control room and never loads from a CDN.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::ApiError;

mod table {
    include!(concat!(env!("OUT_DIR"), "/board_assets.rs"));
}

/// Only this hub: scripts, styles, fonts, fetches and the stream all come from it; images
/// may also be inline `data:` URLs (chart exports, icons).
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'";

struct Asset {
    bytes: &'static [u8],
    etag: HeaderValue,
    content_type: &'static str,
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    table::BOARD_ASSETS
        .iter()
        .map(|&(path, bytes)| {
            let digest = Sha256::digest(bytes);
            // Hex digits only: always a valid header value.
            let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
                .unwrap_or_else(|_| HeaderValue::from_static("\"board\""));
            (
                path,
                Asset {
                    bytes,
                    etag,
                    content_type: content_type(path),
                },
            )
        })
        .collect()
});

/// Hashes every file now, at start, rather than on the first request.
pub fn prepare() {
    LazyLock::force(&ASSETS);
}

/// The content type of a board file, by its extension.
fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        // LICENSE, README: text.
        None => return "text/plain; charset=utf-8",
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /`.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /board/{*path}`.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no such file",
            Value::String(format!("board/{path}")),
        )
        .into_response();
    };
    let fresh = headers.get_all(IF_NONE_MATCH).iter().any(|v| matches(v, &asset.etag));
    let common = [
        (ETAG, asset.etag.clone()),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        StatusCode::OK,
        common,
        [(CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
        asset.bytes,
    )
        .into_response()
}

/// Whether an `If-None-Match` value names `etag`: `*`, or one of its comma-separated tags
/// (compared weakly, as RFC 9110 says for this header: a `W/` prefix is ignored).
fn matches(header: &HeaderValue, etag: &HeaderValue) -> bool {
    let (Ok(header), Ok(etag)) = (header.to_str(), etag.to_str()) else {
        return false;
    };
    header.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("views/a.b.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("vendor/uplot/uPlot.min.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("i18n/en.json"), "application/json");
        assert_eq!(content_type("vendor/uplot/LICENSE"), "text/plain; charset=utf-8");
        assert_eq!(content_type("x.woff2"), "font/woff2");
        assert_eq!(content_type("x.bin"), "application/octet-stream");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let etag = HeaderValue::from_static("\"abc\"");
        let m = |h: &'static str| matches(&HeaderValue::from_static(h), &etag);
        assert!(m("\"abc\""));
        assert!(m("W/\"abc\""));
        assert!(m("\"x\", \"abc\""));
        assert!(m("*"));
        assert!(!m("\"abcd\""));
        assert!(!m("abc"));
    }
}
