//! The gateway's own HTTP port (`/healthz`, `/metrics`) cannot be held by a silent or slow
//! client (issue 9, defect 7): such a connection is closed after the header timeout while a
//! probe is answered.

use std::time::{Duration, Instant};

use gatehouse_gateway::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_silent_and_a_slowloris_connection_are_closed_after_the_header_timeout_while_healthz_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::from_toml(&format!(
        r#"
[gateway]
id = "gw-http"
estate = "estate-a"
data_dir = "{}"
hubs = ["http://127.0.0.1:1"]
http_listen = "127.0.0.1:0"
http_header_timeout_s = 1
[uplink]
plaintext = true

"#,
        dir.path().display()
    ))
    .expect("test configuration");
    let gw = gatehouse_gateway::start(config).await.expect("gateway starts");
    let addr = gw.http_addr.expect("HTTP listening");
    let started = Instant::now();

    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let slowloris = tokio::spawn(async move {
        for b in b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        false
    });

    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz answers");
    assert_eq!(r.status(), 200);

    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the silent connection is still open after {:?}",
        started.elapsed()
    );
    let cut = tokio::time::timeout(Duration::from_secs(10), slowloris)
        .await
        .expect("the slowloris client stops")
        .expect("slowloris task");
    assert!(cut, "the slowloris client completed its request head");
    gw.shutdown().await;
}
