//! The board's files, embedded at build time, served by a running hub over real HTTP: every
//! file of `hub/board/` byte for byte with its content type, ETag revalidation, the security
//! headers, and nothing outside the table (404 JSON, even for a path that climbs out).

use std::path::{Path, PathBuf};

use gatehouse_hub::{ManualClock, RunningHub};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod common;

async fn start(dir: &Path) -> RunningHub {
    let clock = ManualClock::new(1_750_000_000_000);
    common::start_at(common::config(&dir.join("hub.db"), common::ESTATE_A), &clock).await
}

/// Every file under `hub/board/` (hidden ones left out, as build.rs does), as
/// (path relative to `board/` with `/`, file path).
fn board_files() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
        for entry in std::fs::read_dir(dir).expect("board folder readable") {
            let entry = entry.expect("board entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(&path, &format!("{prefix}{name}/"), out);
            } else {
                out.push((format!("{prefix}{name}"), path));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("board"), "", &mut out);
    out.sort();
    out
}

/// The type a browser must be told, decided here independently of the hub's table.
fn expected_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("txt" | "md") | None => "text/plain; charset=utf-8",
        Some(other) => panic!("board file {path}: add a content type for .{other} to the hub and to this test"),
    }
}

fn header(r: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    r.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("{} has no {name} header", r.url()))
        .to_str()
        .expect("ASCII header")
}

/// A raw `GET target` (no client normalising `..` away); the status line and the body.
async fn raw_get(hub: &RunningHub, target: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(hub.http_addr()).await.expect("connect");
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("read");
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn every_board_file_is_served_byte_identical_with_its_type_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let base = format!("http://{}", hub.http_addr());
    let files = board_files();
    assert!(
        files.iter().any(|(p, _)| p == "index.html"),
        "hub/board/index.html exists"
    );
    let mut etags = std::collections::HashMap::new();
    for (rel, path) in &files {
        let want = std::fs::read(path).unwrap();
        let r = common::admin_client()
            .get(format!("{base}/board/{rel}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET /board/{rel}");
        assert_eq!(header(&r, CONTENT_TYPE), expected_type(rel), "type of {rel}");
        assert_eq!(header(&r, CACHE_CONTROL), "no-cache");
        assert_eq!(header(&r, "x-content-type-options".parse().unwrap()), "nosniff");
        let csp = header(&r, CONTENT_SECURITY_POLICY);
        assert!(csp.contains("default-src 'self'") && !csp.contains("http"), "{csp}");
        let etag = header(&r, ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "strong ETag: {etag}");
        let got = r.bytes().await.unwrap();
        assert!(got[..] == want[..], "/board/{rel} differs from {}", path.display());
        etags.entry(want).or_insert(etag);
    }
    // Different contents, different tags.
    let distinct: std::collections::HashSet<_> = etags.values().collect();
    assert_eq!(distinct.len(), etags.len());
    hub.shutdown().await;
}

#[tokio::test]
async fn root_is_the_index_page() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let base = format!("http://{}", hub.http_addr());
    let r = common::admin_client().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CONTENT_TYPE), "text/html; charset=utf-8");
    let index = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("board/index.html")).unwrap();
    assert!(r.bytes().await.unwrap()[..] == index[..]);
    hub.shutdown().await;
}

#[tokio::test]
async fn etag_revalidation_answers_304_until_the_tag_differs() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let url = format!("http://{}/board/index.html", hub.http_addr());
    let client = common::admin_client();
    let first = client.get(&url).send().await.unwrap();
    let etag = header(&first, ETAG).to_owned();

    let same = client.get(&url).header(IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&same, ETAG), etag);
    assert_eq!(header(&same, CACHE_CONTROL), "no-cache");
    assert!(same.bytes().await.unwrap().is_empty());

    let listed = client
        .get(&url)
        .header(IF_NONE_MATCH, format!("\"other\", W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::NOT_MODIFIED);

    let other = client
        .get(&url)
        .header(IF_NONE_MATCH, "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert!(!other.bytes().await.unwrap().is_empty());
    hub.shutdown().await;
}

#[tokio::test]
async fn unknown_files_and_climbing_paths_are_404_json() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let base = format!("http://{}", hub.http_addr());
    for path in ["/board/nope.js", "/board/index.htm", "/board/views/", "/index.html"] {
        let r = common::admin_client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // Sent raw: an HTTP client would resolve the dots before sending.
    for target in [
        "/board/../Cargo.toml",
        "/board/%2e%2e/Cargo.toml",
        "/board/..%2fCargo.toml",
        "/board//etc/passwd",
        "/board/%2fetc%2fpasswd",
        "/board/../../../../etc/passwd",
    ] {
        let (status, body) = raw_get(&hub, target).await;
        assert!(status.contains(" 404 "), "{target}: {status}");
        assert!(body.contains("\"error\""), "{target}: {body}");
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{target}: {body}"
        );
    }
    hub.shutdown().await;
}
