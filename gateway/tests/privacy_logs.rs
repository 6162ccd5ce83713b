//! A resident's card number, plate or flat never reaches the gateway's log in clear, not
//! even inside a rejection's detail (serde quotes the value it could not take): the real
//! `gatehouse-gateway` binary at `RUST_LOG=debug`, real `mosquitto_pub` publishes — good
//! ones and wrongly typed ones — and its whole log searched afterwards.

mod common;
use common::{Gateway, free_addr, wait_until};
use std::process::Command;
use std::time::Duration;

const CARD_BAD: &str = "12345678";
const CARD: &str = "23456789";
const PLATE: &str = "沪B54321";
const FLAT: &str = "B9-0909";

fn publish(mqtt: std::net::SocketAddr, device: &str, payload: &str) {
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt.port().to_string(),
            "-i",
            device,
            "-u",
            device,
            "-P",
            common::PASSWORD,
            "-q",
            "1",
        ])
        .args(["-t", &format!("gatehouse/v1/{device}/event"), "-m", payload])
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub {payload}");
}

/// The hub's API token of this test.
const TOKEN: &str = "privacy-logs-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_and_events_log_no_card_plate_or_flat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub_config = format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
         [tls]\nplaintext = true\n\n[[gateways]]\nid = \"gw-1\"\nestate = \"estate-a\"\n\n\
         [[api_tokens]]\nname = \"test\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\n\
         [[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\n",
        dir.path().join("hub.db").display(),
        gatehouse_hub::auth::token_sha256(TOKEN)
    );
    let hub = gatehouse_hub::start(gatehouse_hub::HubConfig::from_toml(&hub_config).expect("hub config"))
        .await
        .expect("hub");
    let (mqtt, http) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw-1\"\nestate = \"estate-a\"\ndata_dir = \"{}\"\nhubs = [\"http://{}\"]\n\
             http_listen = \"{http}\"\n\n[uplink]\nplaintext = true\n\n[mqtt]\nlisten = \"{mqtt}\"\n\n\
             [[devices]]\nid = \"door-1\"\nkind = \"door\"\narea = \"gate\"\n{hash}\n\
             [[devices]]\nid = \"intercom-1\"\nkind = \"intercom\"\narea = \"gate\"\n{hash}",
            dir.path().join("gw").display(),
            hub.grpc_addr(),
            hash = common::hash_line()
        ),
    )
    .expect("write config");
    let log = dir.path().join("gateway.log");
    // The binary's log goes to stdout today (`tracing_subscriber::fmt::layer()`'s default
    // writer, though the docs say stderr): both are the log here.
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let gateway = Gateway(
        Command::new(env!("CARGO_BIN_EXE_gatehouse-gateway"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn gatehouse-gateway"),
    );
    wait_until("the gateway's broker", Duration::from_secs(20), async || {
        tokio::net::TcpStream::connect(mqtt).await.is_ok()
    })
    .await;

    // Wrongly typed: refused, and the refusal is logged.
    publish(
        mqtt,
        "door-1",
        &format!(r#"{{"type":"access","door":"D1","result":"granted","credential":{CARD_BAD}}}"#),
    );
    publish(
        mqtt,
        "door-1",
        &format!(r#"{{"type":"vehicle","lane":"in-1","plate":"{PLATE}","direction":"in","resident":"{PLATE}"}}"#),
    );
    publish(
        mqtt,
        "intercom-1",
        &format!(r#"{{"type":"emergency_call","from":"{FLAT}","seconds":"{FLAT}"}}"#),
    );
    // Good ones: stored and sent on.
    publish(
        mqtt,
        "door-1",
        &format!(r#"{{"type":"access","door":"D1","result":"denied","credential":"{CARD}"}}"#),
    );
    publish(
        mqtt,
        "door-1",
        &format!(r#"{{"type":"vehicle","lane":"in-1","plate":"{PLATE}","direction":"in","resident":false}}"#),
    );
    publish(
        mqtt,
        "intercom-1",
        &format!(r#"{{"type":"emergency_call","from":"{FLAT}"}}"#),
    );
    wait_until(
        "the emergency call's alarm at the hub",
        Duration::from_secs(20),
        async || {
            let url = format!("http://{}/api/v1/alarms", hub.http_addr());
            match reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains("emergency_call")),
                Err(_) => false,
            }
        },
    )
    .await;
    // Time for the last lines, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(gateway);

    let log = std::fs::read_to_string(&log).expect("the log");
    assert!(
        log.contains("rejected MQTT publish"),
        "the refusals were logged:\n{log}"
    );
    for value in [CARD_BAD, CARD, PLATE, FLAT] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(value)).collect();
        assert!(lines.is_empty(), "{value} in the gateway's log:\n{}", lines.join("\n"));
    }
    hub.shutdown().await;
}
