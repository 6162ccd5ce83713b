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
