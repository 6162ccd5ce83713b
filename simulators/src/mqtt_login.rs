//! MQTT logins of simulated devices: the gateway checks username = device id and a password
//! against the argon2 hash in its `[[devices]] mqtt_password_hash`. The demo and the
//! simulated estates make one random password per device and write only its hash into the
//! gateway configuration; tests may share [`TEST_PASSWORD`], whose hash is made once.

use std::sync::OnceLock;

/// The password tests give every device (never used by the demo).
pub const TEST_PASSWORD: &str = "gatehouse-test-device-password";

/// A new random password: 24 bytes of OS randomness, hex.
pub fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness for a device password: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The argon2id PHC string of `password` (what `gatehouse-gateway hash-password` prints).
pub fn hash(password: &str) -> anyhow::Result<String> {
    Ok(gatehouse_gateway::adapters::mqtt::auth::hash_password(
        password.as_bytes(),
    )?)
}

/// The hash of [`TEST_PASSWORD`], made once per process.
pub fn test_password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash(TEST_PASSWORD).unwrap_or_default())
}

/// `mqtt_password_hash = "<hash of TEST_PASSWORD>"`, a line for a test's `[[devices]]` table.
pub fn test_hash_line() -> String {
    format!("mqtt_password_hash = \"{}\"\n", test_password_hash())
}
