//! Who may connect to the gateway's MQTT server and what they may do, tried with clients we
//! did not write (Mosquitto's `mosquitto_pub` / `mosquitto_sub`, `apt install
//! mosquitto-clients`) and rumqttc: passwords, failed-login backoff, topic rights, retained
//! commands, TLS with client certificates.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::atomic::Ordering::Relaxed,
    time::Duration,
};

use common::{PASSWORD, free_addr, hash_line, wait_until};
use gatehouse_gateway::{
    RunningGateway,
    config::Config,
    metrics::{MqttDenial, MqttRefusal},
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A gateway with doors `door-1` … `door-3` (password [`PASSWORD`]), no hub reachable
/// (events stay in its outbox), `mqtt_extra` appended to `[mqtt]`.
async fn gateway(dir: &Path, mqtt_extra: &str) -> RunningGateway {
    let mut doors = String::new();
    for i in 1..=3 {
        doors.push_str(&format!(
            "\n[[devices]]\nid = \"door-{i}\"\nkind = \"door\"\narea = \"gate-{i}\"\n{}",
            hash_line()
        ));
    }
    let text = format!(
        "[gateway]\nid = \"gw-auth\"\nestate = \"estate-a\"\ndata_dir = \"{}\"\nhubs = [\"http://127.0.0.1:1\"]\n\n[uplink]\nplaintext = true\n\n\
         [mqtt]\nlisten = \"{}\"\nauth_max_failures = 5\n{mqtt_extra}\n{doors}",
        dir.join("gw").display(),
        free_addr()
    );
    gatehouse_gateway::start(Config::from_toml(&text).expect("config"))
        .await
        .expect("gateway starts")
}

fn port(gw: &RunningGateway) -> String {
    gw.mqtt_addr.expect("mqtt bound").port().to_string()
}

/// `mosquitto_pub -q 1` with `args`; whether it exited 0 (CONNACK accepted, PUBACK).
fn publish(gw: &RunningGateway, args: &[&str]) -> bool {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port(gw), "-q", "1"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run mosquitto_pub (apt install mosquitto-clients)")
        .success()
}

const EVENT: &str = r#"{"type":"door_forced","door":"D1"}"#;

fn refused(gw: &RunningGateway, why: MqttRefusal) -> u64 {
    gw.metrics.mqtt_refusals(why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_devices_with_their_password_get_in_and_only_to_their_own_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), "").await;
    let accepted = || gw.metrics.mqtt_accepted.load(Relaxed);

    // The right password: in, and the event is taken.
    assert!(publish(
        &gw,
        &[
            "-i",
            "door-1",
            "-u",
            "door-1",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-1/event",
            "-m",
            EVENT
        ]
    ));
    assert_eq!(accepted(), 1);

    // A wrong password, an unknown user, no credentials: refused and counted.
    assert!(!publish(
        &gw,
        &[
            "-u",
            "door-1",
            "-P",
            "wrong",
            "-t",
            "gatehouse/v1/door-1/event",
            "-m",
            EVENT
        ]
    ));
    assert!(!publish(
        &gw,
        &[
            "-u",
            "attacker",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-1/event",
            "-m",
            EVENT
        ]
    ));
    assert_eq!(refused(&gw, MqttRefusal::BadCredentials), 2);
    assert!(!publish(
        &gw,
        &["-i", "attacker", "-t", "gatehouse/v1/door-1/event", "-m", EVENT]
    ));
    assert_eq!(refused(&gw, MqttRefusal::NoCredentials), 1);
    assert_eq!(accepted(), 1, "nothing refused was taken");

    // door-1 publishing on door-2's event topic: dropped (acknowledged, as MQTT 3.1.1
    // allows), counted, nothing raised.
    assert!(publish(
        &gw,
        &[
            "-u",
            "door-1",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-2/event",
            "-m",
            EVENT
        ]
    ));
    assert_eq!(gw.metrics.mqtt_denials(MqttDenial::PublishNotOwn), 1);
    assert_eq!(accepted(), 1, "door-2's forced door was not raised by door-1");

    // A retained `unlock` on door-1's command topic, by door-1 itself: refused, and door-1
    // subscribing afterwards receives nothing.
    assert!(publish(
        &gw,
        &[
            "-u",
            "door-1",
            "-P",
            PASSWORD,
            "-r",
            "-t",
            "gatehouse/v1/door-1/command",
            "-m",
            r#"{"command_id":"c1","action":"unlock"}"#
        ]
    ));
    assert_eq!(gw.metrics.mqtt_denials(MqttDenial::PublishCommandTopic), 1);
    let own = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port(&gw), "-u", "door-1", "-P", PASSWORD])
        .args(["-t", "gatehouse/v1/door-1/command", "-C", "1", "-W", "2"])
        .output()
        .expect("mosquitto_sub");
    assert!(own.stdout.is_empty(), "no retained command was delivered");
    assert_eq!(
        gw.metrics.mqtt_denials(MqttDenial::SubscribeNotOwn),
        0,
        "its own command topic is its right"
    );

    // `mosquitto_sub -t '#'` with door-1's credentials: the subscription is refused (SUBACK
    // 0x80) and it sees nothing while door-2 publishes.
    let everything = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port(&gw), "-u", "door-1", "-P", PASSWORD])
        .args(["-t", "#", "-t", "gatehouse/v1/+/command", "-C", "1", "-W", "3", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    wait_until("the refused subscriptions", Duration::from_secs(5), async || {
        gw.metrics.mqtt_denials(MqttDenial::SubscribeNotOwn) >= 2
    })
    .await;
    assert!(publish(
        &gw,
        &[
            "-i",
            "door-2",
            "-u",
            "door-2",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-2/event",
            "-m",
            EVENT
        ]
    ));
    let out = tokio::task::spawn_blocking(move || everything.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert!(
        out.stdout.is_empty(),
        "door-1 saw: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(accepted(), 2);

    // A last will on another device's topic is refused at CONNECT.
    assert!(!publish(
        &gw,
        &[
            "-u",
            "door-1",
            "-P",
            PASSWORD,
            "--will-topic",
            "gatehouse/v1/door-2/status",
            "--will-payload",
            "offline",
            "-t",
            "gatehouse/v1/door-1/status",
            "-m",
            "online"
        ]
    ));
    assert_eq!(refused(&gw, MqttRefusal::WillNotAuthorized), 1);

    // Failed logins from one source: after `auth_max_failures` (5; three counted above, and
    // successes in between do not wipe them), the source is refused without checking, even
    // with the right password.
    for _ in 0..3 {
        assert!(!publish(
            &gw,
            &[
                "-u",
                "door-3",
                "-P",
                "guess",
                "-t",
                "gatehouse/v1/door-3/event",
                "-m",
                EVENT
            ]
        ));
    }
    assert!(!publish(
        &gw,
        &[
            "-u",
            "door-3",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-3/event",
            "-m",
            EVENT
        ]
    ));
    assert!(refused(&gw, MqttRefusal::AuthRateLimited) >= 1);
    // Another source address is not affected.
    assert!(publish(
        &gw,
        &[
            "-A",
            "127.0.0.2",
            "-u",
            "door-3",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-3/event",
            "-m",
            EVENT
        ]
    ));
    assert_eq!(accepted(), 3);
    let text = gw.metrics.render();
    assert!(
        text.contains("gatehouse_gateway_mqtt_refused_total{reason=\"bad_credentials\"}"),
        "{text}"
    );
    assert!(text.contains("gatehouse_gateway_mqtt_denied_total{reason=\"publish_not_own\"} 1"));
}

#[test]
fn anonymous_access_is_refused_off_loopback() {
    let base = |listen: &str| {
        format!(
            "[gateway]\nid = \"g\"\nestate = \"e\"\ndata_dir = \"/tmp/x\"\nhubs = [\"http://127.0.0.1:1\"]\n\n[uplink]\nplaintext = true\n\n\
             [mqtt]\nlisten = \"{listen}\"\nallow_anonymous = true\n"
        )
    };
    let err = Config::from_toml(&base("0.0.0.0:1883")).expect_err("refused");
    assert!(err.to_string().contains("allow_anonymous"), "{err}");
    Config::from_toml(&base("127.0.0.1:1883")).expect("allowed on loopback");
    let bad_hash = "[gateway]\nid = \"g\"\nestate = \"e\"\ndata_dir = \"/tmp/x\"\nhubs = [\"http://127.0.0.1:1\"]\n\n[uplink]\nplaintext = true\n\n\
         [mqtt]\nlisten = \"127.0.0.1:1\"\n\n[[devices]]\nid = \"d\"\nkind = \"door\"\narea = \"a\"\nmqtt_password_hash = \"secret\"\n";
    assert!(
        Config::from_toml(bad_hash).is_err(),
        "a clear-text password is not a hash"
    );
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
}

/// A CA; a server certificate for 127.0.0.1; client certificates with CN = `cn`.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, cn: &str, sans: &[&str]) -> (String, String) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_logs_in_by_client_certificate_over_tls_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let devices = ca("devices CA");
    let stranger = ca("someone else's CA");
    let (server_cert, server_key) = leaf(&devices, "gateway", &["127.0.0.1", "localhost"]);
    let pki = Pki {
        ca: write(d, "ca.pem", &devices.pem()),
        server_cert: write(d, "server.pem", &server_cert),
        server_key: write(d, "server.key", &server_key),
    };
    let (c, k) = leaf(&devices, "door-2", &[]);
    let (door_cert, door_key) = (write(d, "door2.pem", &c), write(d, "door2.key", &k));
    let (c, k) = leaf(&stranger, "door-2", &[]);
    let (bad_cert, bad_key) = (write(d, "bad.pem", &c), write(d, "bad.key", &k));

    let gw = gateway(
        d,
        &format!(
            "[mqtt.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            pki.server_cert, pki.server_key, pki.ca
        ),
    )
    .await;
    let tls = |cert: &str, key: &str| {
        vec![
            "--cafile".to_string(),
            pki.ca.clone(),
            "--cert".into(),
            cert.to_string(),
            "--key".into(),
            key.to_string(),
        ]
    };
    let with = |extra: Vec<String>, topic: &str| {
        let mut a = extra;
        a.extend(["-t".into(), topic.into(), "-m".into(), EVENT.into()]);
        a
    };
    let run = |args: Vec<String>| publish(&gw, &args.iter().map(String::as_str).collect::<Vec<_>>());

    // The certificate names door-2: no password needed, and it delivers its event.
    assert!(run(with(tls(&door_cert, &door_key), "gatehouse/v1/door-2/event")));
    assert_eq!(gw.metrics.mqtt_accepted.load(Relaxed), 1);
    // ... and only under door-2.
    assert!(run(with(tls(&door_cert, &door_key), "gatehouse/v1/door-1/event")));
    assert_eq!(gw.metrics.mqtt_denials(MqttDenial::PublishNotOwn), 1);
    // A username naming another device than the certificate: refused.
    let mut other = tls(&door_cert, &door_key);
    other.extend(["-u".into(), "door-1".into(), "-P".into(), PASSWORD.into()]);
    assert!(!run(with(other, "gatehouse/v1/door-1/event")));
    assert_eq!(refused(&gw, MqttRefusal::CertMismatch), 1);
    // A certificate of another CA fails the handshake.
    assert!(!run(with(tls(&bad_cert, &bad_key), "gatehouse/v1/door-2/event")));
    assert!(refused(&gw, MqttRefusal::TlsHandshake) >= 1);
    // Without a certificate, over TLS, a password still works.
    let pw = vec![
        "--cafile".to_string(),
        pki.ca.clone(),
        "-u".into(),
        "door-3".into(),
        "-P".into(),
        PASSWORD.into(),
    ];
    assert!(run(with(pw, "gatehouse/v1/door-3/event")));
    // Plain MQTT on the TLS port gets nowhere.
    assert!(!publish(
        &gw,
        &[
            "-u",
            "door-3",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-3/event",
            "-m",
            EVENT
        ]
    ));
    assert_eq!(gw.metrics.mqtt_accepted.load(Relaxed), 2);
}
