//! The real `gatehouse-gateway` binary connects to a real hub over mutual TLS, with a
//! development PKI minted by the hub's `tls::mint` (as `gatehouse-hub certs` does), and its
//! events arrive.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Gateway, free_addr, wait_until};
use gatehouse_hub::tls::{GatewayIdentity, mint};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// The hub's API token of this test (an operator of every estate).
const TOKEN: &str = "uplink-tls-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_binary_delivers_events_to_the_hub_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = mint::Layout::new(dir.path().join("pki"));
    mint::mint_all(
        &pki,
        &mint::MintPlan {
            hub_names: Vec::new(),
            gateways: vec![GatewayIdentity::new("estate-a", "gw-tls")],
            validity: mint::DEFAULT_VALIDITY,
        },
    )
    .expect("mint");
    let hub_db = dir.path().join("hub.db");
    let hub_config = format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\ncrl = \"{}\"\n\n\
         [[gateways]]\nid = \"gw-tls\"\nestate = \"estate-a\"\n\n\
         [[api_tokens]]\nname = \"test\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n\n\
         [[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\n",
        hub_db.display(),
        pki.hub_cert().display(),
        pki.hub_key().display(),
        pki.ca_cert().display(),
        pki.crl().display(),
        gatehouse_hub::auth::token_sha256(TOKEN),
    );
    let hub = gatehouse_hub::start(gatehouse_hub::HubConfig::from_toml(&hub_config).expect("hub config"))
        .await
        .expect("hub");
    let (mqtt, http) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw-tls\"\nestate = \"estate-a\"\ndata_dir = \"{}\"\nhubs = [\"https://localhost:{}\"]\n\
             http_listen = \"{http}\"\n\n[mqtt]\nlisten = \"{mqtt}\"\n\n\
             [uplink]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nbackoff_max_ms = 300\n\n\
             [[devices]]\nid = \"fire-1\"\nkind = \"fire_panel\"\narea = \"block-1\"\n{}",
            dir.path().join("gw").display(),
            hub.grpc_addr().port(),
            pki.ca_cert().display(),
            pki.gateway_cert("gw-tls").display(),
            pki.gateway_key("gw-tls").display(),
            common::hash_line(),
        ),
    )
    .expect("write config");
    let _gateway = Gateway(
        Command::new(env!("CARGO_BIN_EXE_gatehouse-gateway"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gatehouse-gateway"),
    );
    let links = hub.links();
    wait_until("the gateway connected over TLS", Duration::from_secs(20), async || {
        links.is_connected("gw-tls")
    })
    .await;

    // A fire alarm travels device → gateway → (mTLS) → hub.
    let mut options = MqttOptions::new("fire-1", "127.0.0.1", mqtt.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_credentials("fire-1", common::PASSWORD);
    let (client, mut session) = AsyncClient::new(options, 16);
    tokio::spawn(async move { while session.poll().await.is_ok() {} });
    client
        .publish(
            "gatehouse/v1/fire-1/event",
            QoS::AtLeastOnce,
            false,
            r#"{"type":"fire_alarm","loop":1,"zone":"3","point":"7","text":"Block 1 stair"}"#,
        )
        .await
        .expect("publish");
    let api = format!("http://{}/api/v1/alarms", hub.http_addr());
    wait_until(
        "the fire alarm reached the hub",
        Duration::from_secs(20),
        async || match reqwest::Client::new().get(&api).bearer_auth(TOKEN).send().await {
            Ok(r) => r.text().await.is_ok_and(|t| t.contains("fire-1")),
            Err(_) => false,
        },
    )
    .await;
    hub.shutdown().await;
}
