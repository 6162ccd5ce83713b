//! What the tests that run the `gatehouse-gateway` binary share: the child process killed on
//! drop, a free loopback port, and waiting for a condition with a deadline.
#![allow(dead_code)]

use std::{net::SocketAddr, process::Child, time::Duration};

/// Kills the gateway on drop, so a failing assertion leaves no process behind.
pub struct Gateway(pub Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

pub async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, within: Duration, mut check: F) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The MQTT password every device of these tests has (username = its id).
pub const PASSWORD: &str = "gatehouse-test-device-password";

/// The argon2 hash of [`PASSWORD`] (made once per test binary).
pub fn password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| gatehouse_gateway::adapters::mqtt::auth::hash_password(PASSWORD.as_bytes()).expect("hash"))
}

/// `mqtt_password_hash = "…"` for a `[[devices]]` table.
pub fn hash_line() -> String {
    format!("mqtt_password_hash = \"{}\"\n", password_hash())
}
