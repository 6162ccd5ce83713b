//! Loopback ports chosen at run time, so demos and tests never clash with services already
//! on the machine (an MQTT broker on 1883, say).

use std::net::{SocketAddr, TcpListener};

/// A loopback address whose port was free a moment ago. There is a short window in which
/// another process could take it; callers that can bind port 0 themselves should.
pub fn free_local_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}
