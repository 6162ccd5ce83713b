//! Webhooks over https (issue 12 §5): a real TLS server on loopback, its certificate minted by
//! rcgen at test time for 127.0.0.1 under a CA the system does not know. With the CA file
//! configured for the channel the signed notification arrives; without it the handshake fails,
//! the attempt is counted and recorded with a clear reason, retried on the notify backoff,
//! and the notification is kept — a hub restarted with the CA file delivers it. `http://`
//! channels keep working beside https ones.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use common::{eventually, metric, notifications, raise_pump_fault};
use gatehouse_hub::ManualClock;
use hmac::{KeyInit, Mac};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

const SECRET: &str = "test-secret-0123456789";
const T0: i64 = 1_764_000_000_000;

/// A CA (its PEM written to `dir/ca.pem`) and a server certificate for 127.0.0.1 under it.
struct Pki {
    ca_file: PathBuf,
    server: rustls::ServerConfig,
}

fn mint(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse test webhook CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki { ca_file, server }
}

#[derive(Default)]
struct Received {
    /// (body, signature valid)
    calls: Vec<(String, bool)>,
    /// TLS handshakes the server saw fail.
    handshake_failures: usize,
}

fn receiver_app(state: Arc<Mutex<Received>>) -> axum::Router {
    axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let sig = headers
                    .get("x-gatehouse-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let ok = sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                state
                    .lock()
                    .unwrap()
                    .calls
                    .push((String::from_utf8_lossy(&body).into_owned(), ok));
                StatusCode::OK
            }
        }),
    )
}

/// An https webhook receiver on 127.0.0.1 (tokio-rustls + hyper): `https://<addr>/hook`.
async fn https_receiver(server: rustls::ServerConfig, state: Arc<Mutex<Received>>) -> std::net::SocketAddr {
    let app = receiver_app(state.clone());
    common::https_server(server, app, move || state.lock().unwrap().handshake_failures += 1).await
}

/// A plain http webhook receiver: `http://<addr>/hook`.
async fn http_receiver(state: Arc<Mutex<Received>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = receiver_app(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn roster(entries: &[(&str, Option<&Path>)]) -> String {
    let mut out = String::new();
    for (i, (channel, ca)) in entries.iter().enumerate() {
        out.push_str(&format!(
            "[[roster]]\nestate = \"estate-a\"\nrole = \"facility_team\"\nname = \"Facility {i}\"\nchannel = \"{channel}\"\n"
        ));
        if let Some(ca) = ca {
            out.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
        }
    }
    out
}

fn config(db: &Path, roster: &str) -> gatehouse_hub::HubConfig {
    common::config(
        db,
        &format!(
            "{}\n[notify]\nwebhook_secret = \"{SECRET}\"\n\n{roster}\n[[rules.points]]\npoint = \"pump1_fault\"\nwhen = true\npriority = \"P3\"\n",
            common::ESTATE_A
        ),
    )
}

#[tokio::test]
async fn an_https_webhook_with_its_ca_file_and_an_http_one_both_receive_the_signed_notification() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let over_tls = Arc::new(Mutex::new(Received::default()));
    let plain = Arc::new(Mutex::new(Received::default()));
    let tls_addr = https_receiver(pki.server, over_tls.clone()).await;
    let http_addr = http_receiver(plain.clone()).await;
    let roster = roster(&[
        (&format!("https://{tls_addr}/hook"), Some(&pki.ca_file)),
        (&format!("http://{http_addr}/hook"), None),
    ]);
    let clock = ManualClock::new(T0);
    let hub = common::start_at(config(&dir.path().join("hub.db"), &roster), &clock).await;
    raise_pump_fault(&hub).await;

    eventually("both notifications delivered", || async {
        let ns = notifications(&hub).await;
        ns.len() == 2 && ns.iter().all(|n| n["status"] == "delivered")
    })
    .await;
    for (what, r) in [("https", &over_tls), ("http", &plain)] {
        let r = r.lock().unwrap();
        assert_eq!(r.calls.len(), 1, "{what}: one delivery");
        assert!(r.calls[0].1, "{what}: the signature is valid");
        let body: Value = serde_json::from_str(&r.calls[0].0).unwrap();
        assert_eq!(body["role"], "facility_team", "{what}");
    }
    assert_eq!(over_tls.lock().unwrap().handshake_failures, 0);
    assert_eq!(
        metric(&hub, "gatehouse_hub_webhook_attempts_total{result=\"delivered\"}").await,
        2.0
    );
    assert_eq!(
        metric(&hub, "gatehouse_hub_webhook_attempts_total{result=\"tls_error\"}").await,
        0.0
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn an_https_webhook_whose_ca_is_not_trusted_fails_clearly_is_retried_counted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let received = Arc::new(Mutex::new(Received::default()));
    let addr = https_receiver(pki.server, received.clone()).await;
    let channel = format!("https://{addr}/hook");
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);

    // No CA file: the system's roots do not know the test CA.
    let hub = common::start_at(config(&db, &roster(&[(&channel, None)])), &clock).await;
    raise_pump_fault(&hub).await;
    eventually("the first attempt recorded", || async {
        let ns = notifications(&hub).await;
        ns.len() == 1 && ns[0]["attempts"] == 1
    })
    .await;
    let n = &notifications(&hub).await[0];
    assert_eq!(n["status"], "pending", "{n}");
    let error = n["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("TLS handshake failed") && error.contains("certificate"),
        "the reason names the TLS failure: {error}"
    );
    assert!(
        !error.contains(&addr.to_string()),
        "the URL stays out of the error: {error}"
    );
    // Retried on the notify backoff (first retry after retry_initial_s = 5 s).
    clock.advance_s(5);
    eventually("the retry recorded", || async {
        notifications(&hub).await[0]["attempts"] == 2
    })
    .await;
    assert_eq!(notifications(&hub).await[0]["status"], "pending");
    assert!(metric(&hub, "gatehouse_hub_webhook_attempts_total{result=\"tls_error\"}").await >= 2.0);
    assert!(received.lock().unwrap().calls.is_empty());
    assert!(received.lock().unwrap().handshake_failures >= 2);
    hub.shutdown().await;

    // Nothing is lost: the same database, the channel now trusting the CA, delivers it.
    let hub = common::start_at(config(&db, &roster(&[(&channel, Some(&pki.ca_file))])), &clock).await;
    clock.advance_s(10);
    eventually("the kept notification delivered", || async {
        notifications(&hub).await[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(notifications(&hub).await[0]["attempts"], 3);
    let calls = received.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].1, "signed");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_invalid_ca_file_stops_the_start_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let roster_missing = roster(&[("https://127.0.0.1:9/hook", Some(&missing))]);
    let e = gatehouse_hub::start(config(&dir.path().join("a.db"), &roster_missing))
        .await
        .expect_err("the hub refuses to start");
    let e = e.to_string();
    assert!(e.contains("cannot read CA file") && e.contains("missing-ca.pem"), "{e}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let e = gatehouse_hub::start(config(
        &dir.path().join("b.db"),
        &roster(&[("https://127.0.0.1:9/hook", Some(&garbage))]),
    ))
    .await
    .expect_err("the hub refuses to start")
    .to_string();
    assert!(e.contains("holds no certificate") && e.contains("garbage.pem"), "{e}");

    // A CA file on a plain http channel is a configuration mistake, named by its key.
    let e = gatehouse_hub::HubConfig::from_toml(&format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n{}\n[notify]\nwebhook_secret = \"{SECRET}\"\n{}",
        dir.path().join("c.db").display(),
        common::ESTATE_A,
        roster(&[("http://127.0.0.1:9/hook", Some(&garbage))])
    ))
    .and_then(|c| c.validate().map(|()| c))
    .expect_err("refused")
    .to_string();
    assert!(e.contains("roster[0].ca_file"), "{e}");
}
