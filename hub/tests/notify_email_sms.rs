//! E-mail and SMS channels (issue 14) against real peers on loopback: an SMTP server
//! (Python's aiosmtpd, `tests/peers/smtp_sink.py`) speaking STARTTLS or implicit TLS with a
//! certificate minted by rcgen at test time, and an https SMS gateway stub (axum on
//! tokio-rustls) that checks the request the template makes. A failing gateway is retried on
//! the notify backoff; an SMTP server whose certificate is not trusted fails with a reason
//! naming TLS; the SMTP password never reaches a row, the timeline or the hub's logs.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::{eventually, get, notifications, raise_pump_fault};
use gatehouse_hub::{ManualClock, RunningHub};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

const T0: i64 = 1_764_000_000_000;
const SMTP_USER: &str = "gatehouse";
const SMTP_PASSWORD: &str = "smtp-pass-Zq7#w9!kP2";
const PUBLIC_URL: &str = "https://centre.example.com";
/// The alarm's text, which the incident's title carries: a quote and Chinese, to be escaped
/// in JSON and encoded in the e-mail's Subject.
const ALARM_TEXT: &str = r#"泵房 "1号" 水泵故障"#;

/// Everything the hub logs in this test process (all tests), to check for secrets.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// A CA (PEM at `dir/ca.pem`) and a certificate for 127.0.0.1 under it (PEM files for the
/// Python server, a rustls config for the Rust stub).
struct Pki {
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    server: rustls::ServerConfig,
}

fn mint(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse test mail and SMS CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let cert_file = dir.join("server.pem");
    let key_file = dir.join("server.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_file,
        cert_file,
        key_file,
        server,
    }
}

/// The aiosmtpd server, killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl SmtpSink {
    fn start(mode: &str, pki: &Pki, dir: &Path, auth: bool) -> SmtpSink {
        let out = dir.join(format!("mail-{mode}"));
        std::fs::create_dir_all(&out).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(mode)
            .arg(&pki.cert_file)
            .arg(&pki.key_file)
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if auth {
            cmd.env("SMTP_SINK_USER", SMTP_USER)
                .env("SMTP_SINK_PASSWORD", SMTP_PASSWORD);
        }
        let mut child = cmd.spawn().expect("python3 runs (aiosmtpd is installed by .ci/setup)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py did not start (is aiosmtpd installed?): {line:?}"));
        SmtpSink { child, port, out }
    }

    /// The messages received so far, parsed by the sink (`n.json`) with their raw bytes.
    fn messages(&self) -> Vec<(Value, String)> {
        let mut out = Vec::new();
        for n in 1.. {
            let json = self.out.join(format!("{n}.json"));
            let Ok(text) = std::fs::read_to_string(&json) else {
                break;
            };
            let raw = std::fs::read_to_string(self.out.join(format!("{n}.eml"))).unwrap();
            out.push((serde_json::from_str(&text).unwrap(), raw));
        }
        out
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hub_config(db: &Path, notify: &str, channel: &str) -> gatehouse_hub::HubConfig {
    common::config(
        db,
        &format!(
            "{}\n[notify]\npublic_url = \"{PUBLIC_URL}\"\n{notify}\n\n[[roster]]\nestate = \"estate-a\"\nrole = \"facility_team\"\nname = \"Facility Wang\"\nchannel = \"{channel}\"\n\n[[rules.points]]\npoint = \"pump1_fault\"\nwhen = true\npriority = \"P3\"\nmessage = '{ALARM_TEXT}'\n",
            common::ESTATE_A
        ),
    )
}

fn email_section(sink_port: u16, security: &str, ca: Option<&Path>, auth: bool) -> String {
    let mut s = format!(
        "[notify.email]\nserver = \"127.0.0.1\"\nport = {sink_port}\nsecurity = \"{security}\"\nfrom = \"Gatehouse 门卫 <gatehouse@example.com>\"\n"
    );
    if let Some(ca) = ca {
        s.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    if auth {
        s.push_str(&format!("username = \"{SMTP_USER}\"\npassword = \"{SMTP_PASSWORD}\"\n"));
    }
    s
}

async fn timeline(hub: &RunningHub, incident: &Value) -> Vec<String> {
    let detail = get(hub, &format!("/api/v1/incidents/{incident}")).await;
    detail["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|t| t["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What every e-mail test checks of a received message.
fn check_mail(mail: &Value, raw: &str, incident: &Value) {
    assert_eq!(mail["content_type"], "multipart/alternative", "{mail}");
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert_eq!(mail["to"], "ops@example.com");
    assert!(
        mail["from"].as_str().unwrap().contains("gatehouse@example.com")
            && mail["from"].as_str().unwrap().contains("门卫"),
        "{mail}"
    );
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.contains(ALARM_TEXT),
        "the subject carries the title, decoded: {subject}"
    );
    // Non-ASCII is not sent raw in a header: RFC 2047 encoded words.
    let raw_subject = raw.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(
        raw_subject.is_ascii() && raw_subject.contains("=?utf-8?"),
        "{raw_subject}"
    );
    let link = format!("{PUBLIC_URL}/#/incidents/{incident}");
    let parts = mail["parts"].as_array().unwrap();
    let part = |ct: &str| {
        parts
            .iter()
            .find(|p| p["content_type"] == ct)
            .unwrap_or_else(|| panic!("no {ct} part in {mail}"))
    };
    for ct in ["text/plain", "text/html"] {
        let p = part(ct);
        assert_eq!(p["charset"], "utf-8", "{p}");
        let text = p["text"].as_str().unwrap();
        assert!(text.contains(&link), "{ct} carries the incident link: {text}");
    }
    assert!(part("text/plain")["text"].as_str().unwrap().contains(ALARM_TEXT));
    assert!(mail["tls"].as_bool().unwrap(), "over TLS");
}

#[tokio::test]
async fn an_email_over_starttls_with_a_password_arrives_as_text_and_html() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let sink = SmtpSink::start("starttls", &pki, dir.path(), true);
    let clock = ManualClock::new(T0);
    let hub = common::start_at(
        hub_config(
            &dir.path().join("hub.db"),
            &email_section(sink.port, "starttls", Some(&pki.ca_file), true),
            "mailto:ops@example.com",
        ),
        &clock,
    )
    .await;
    raise_pump_fault(&hub).await;
    eventually("the e-mail accepted", || async {
        notifications(&hub).await.first().is_some_and(|n| n["status"] == "sent")
    })
    .await;
    let n = &notifications(&hub).await[0];
    assert_eq!(n["attempts"], 1, "{n}");
    assert_eq!(n["channel"], "email", "the API shows the kind, not the address: {n}");
    let incident = &n["body"]["incident"]["id"];
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    check_mail(&mails[0].0, &mails[0].1, incident);
    assert!(mails[0].0["authenticated"].as_bool().unwrap(), "AUTH was used");
    let tl = timeline(&hub, incident).await;
    assert!(tl.iter().any(|t| t.contains("sent (attempt 1)")), "{tl:?}");
    hub.shutdown().await;
    let logs = logs_text();
    assert!(!logs.contains(SMTP_PASSWORD), "the password is never logged");
    assert!(!logs.contains("ops@example.com"), "addresses are masked in logs");
}

#[tokio::test]
async fn an_email_over_implicit_tls_arrives() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let sink = SmtpSink::start("tls", &pki, dir.path(), false);
    let clock = ManualClock::new(T0);
    let hub = common::start_at(
        hub_config(
            &dir.path().join("hub.db"),
            &email_section(sink.port, "tls", Some(&pki.ca_file), false),
            "mailto:ops@example.com",
        ),
        &clock,
    )
    .await;
    raise_pump_fault(&hub).await;
    eventually("the e-mail accepted", || async {
        notifications(&hub).await.first().is_some_and(|n| n["status"] == "sent")
    })
    .await;
    let n = &notifications(&hub).await[0];
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    check_mail(&mails[0].0, &mails[0].1, &n["body"]["incident"]["id"]);
    hub.shutdown().await;
}

#[tokio::test]
async fn an_smtp_server_whose_certificate_is_not_trusted_fails_naming_tls_without_the_password() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let sink = SmtpSink::start("starttls", &pki, dir.path(), true);
    let clock = ManualClock::new(T0);
    // No ca_file: the system's roots do not know the test CA.
    let hub = common::start_at(
        hub_config(
            &dir.path().join("hub.db"),
            &email_section(sink.port, "starttls", None, true),
            "mailto:ops@example.com",
        ),
        &clock,
    )
    .await;
    raise_pump_fault(&hub).await;
    eventually("the first attempt recorded", || async {
        notifications(&hub).await.first().is_some_and(|n| n["attempts"] == 1)
    })
    .await;
    let n = &notifications(&hub).await[0];
    assert_eq!(n["status"], "pending", "retried later: {n}");
    let error = n["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("TLS") && error.contains("invalid peer certificate"),
        "the reason names TLS and the certificate: {error}"
    );
    assert!(!error.contains(SMTP_PASSWORD), "{error}");
    assert!(!error.contains("ops@example.com"), "{error}");
    let tl = timeline(&hub, &n["body"]["incident"]["id"]).await;
    assert!(
        tl.iter().any(|t| t.contains("attempt 1 failed") && t.contains("TLS")),
        "{tl:?}"
    );
    assert!(sink.messages().is_empty(), "nothing was sent in clear");
    hub.shutdown().await;
    let logs = logs_text();
    assert!(
        logs.contains("notification delivery failed"),
        "the hub's logs are captured (else the next check proves nothing)"
    );
    assert!(!logs.contains(SMTP_PASSWORD));
}

#[tokio::test]
async fn smtp_refusals_carry_their_code_and_an_unreachable_server_says_so() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let sink = SmtpSink::start("starttls", &pki, dir.path(), true);
    let clock = ManualClock::new(T0);
    let wrong_password = "wrong-pass-Xy8$e1";
    let cases = [
        // A wrong password: 535, and the password is not in the reason.
        (
            email_section(sink.port, "starttls", Some(&pki.ca_file), true).replace(SMTP_PASSWORD, wrong_password),
            "mailto:ops@example.com",
            "535",
        ),
        // A mailbox the server refuses: 550, the address masked.
        (
            email_section(sink.port, "starttls", Some(&pki.ca_file), true),
            "mailto:nobody@example.com",
            "550",
        ),
        // Nothing listens: unreachable.
        (
            email_section(closed_port().await, "starttls", Some(&pki.ca_file), false),
            "mailto:ops@example.com",
            "cannot reach the SMTP server",
        ),
    ];
    for (i, (section, channel, needle)) in cases.iter().enumerate() {
        let hub = common::start_at(
            hub_config(&dir.path().join(format!("hub-{i}.db")), section, channel),
            &clock,
        )
        .await;
        raise_pump_fault(&hub).await;
        eventually(&format!("case {i}: the first attempt recorded"), || async {
            notifications(&hub).await.first().is_some_and(|n| n["attempts"] == 1)
        })
        .await;
        let n = &notifications(&hub).await[0];
        assert_eq!(n["status"], "pending", "{n}");
        let error = n["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "case {i}: {needle}: {error}");
        for secret in [wrong_password, SMTP_PASSWORD, "nobody@example.com", "ops@example.com"] {
            assert!(!error.contains(secret), "{secret} stays out of the reason: {error}");
        }
        hub.shutdown().await;
    }
    assert!(sink.messages().is_empty());
    assert!(!logs_text().contains(wrong_password));
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// What the SMS stub saw of one request.
#[derive(Debug, Clone)]
struct SmsCall {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    api_key: Option<String>,
    content_type: Option<String>,
    body: String,
}

#[derive(Default)]
struct Gateway {
    calls: Vec<SmsCall>,
    /// Answer 500 to this many requests first.
    fail_first: usize,
}

/// An https SMS gateway stub on 127.0.0.1: records each request, answers 500 to the first
/// `fail_first`, then 200.
async fn sms_gateway(server: rustls::ServerConfig, state: Arc<Mutex<Gateway>>) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
        let state = state.clone();
        async move {
            let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
            let mut s = state.lock().unwrap();
            s.calls.push(SmsCall {
                method,
                path: uri.path().to_owned(),
                query,
                api_key: header("x-api-key"),
                content_type: header("content-type"),
                body,
            });
            if s.calls.len() <= s.fail_first {
                (StatusCode::INTERNAL_SERVER_ERROR, "busy")
            } else {
                (StatusCode::OK, r#"{"result":"queued"}"#)
            }
        }
    });
    common::https_server(server, app, || {}).await
}

fn sms_section(addr: std::net::SocketAddr, key_env: &str, ca: &Path) -> String {
    format!(
        "[notify.sms]\nurl = \"https://{addr}/v1/messages?account=acme&to={{to}}\"\nbody = '{{\"to\":\"{{to}}\",\"text\":\"{{text}}\",\"sender\":\"Gatehouse\"}}'\nmax_chars = 280\nca_file = \"{}\"\n[notify.sms.headers]\nX-Api-Key = \"{{env:{key_env}}}\"\n",
        ca.display()
    )
}

#[tokio::test]
async fn an_sms_follows_the_template_and_a_failing_gateway_is_retried_with_backoff() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let state = Arc::new(Mutex::new(Gateway {
        fail_first: 2,
        ..Default::default()
    }));
    let addr = sms_gateway(pki.server, state.clone()).await;
    let key_env = format!("GATEHOUSE_TEST_SMS_KEY_{}", std::process::id());
    let api_key = "sms-api-key-4f9c2e";
    // SAFETY: set once, before the hub (the only reader) starts; no other test names it.
    unsafe { std::env::set_var(&key_env, api_key) };
    let clock = ManualClock::new(T0);
    let hub = common::start_at(
        hub_config(
            &dir.path().join("hub.db"),
            &format!("retry_initial_s = 5\n{}", sms_section(addr, &key_env, &pki.ca_file)),
            "sms:+8613812345678",
        ),
        &clock,
    )
    .await;
    raise_pump_fault(&hub).await;
    eventually("the first attempt recorded", || async {
        notifications(&hub).await.first().is_some_and(|n| n["attempts"] == 1)
    })
    .await;
    let n = &notifications(&hub).await[0];
    assert_eq!(n["status"], "pending", "{n}");
    let error = n["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 500"), "{error}");

    for secret in [api_key, "account=acme", "13812345678"] {
        assert!(!error.contains(secret), "{secret} stays out of the reason: {error}");
    }
    // The backoff: 5 s, then 10 s.
    clock.advance_s(5);
    eventually("the second attempt", || async {
        notifications(&hub).await[0]["attempts"] == 2
    })
    .await;
    assert_eq!(notifications(&hub).await[0]["status"], "pending");
    clock.advance_s(9);
    hub.tick_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        state.lock().unwrap().calls.len(),
        2,
        "not retried before the backoff ran out"
    );
    clock.advance_s(1);
    eventually("accepted on the third attempt", || async {
        notifications(&hub).await[0]["status"] == "sent"
    })
    .await;
    let n = &notifications(&hub).await[0];
    assert_eq!(n["attempts"], 3, "{n}");
    assert_eq!(n["channel"], "sms", "{n}");
    let incident = &n["body"]["incident"]["id"];
    let tl = timeline(&hub, incident).await;
    for needle in ["attempt 1 failed", "attempt 2 failed", "sent (attempt 3)"] {
        assert!(tl.iter().any(|t| t.contains(needle)), "{needle} in {tl:?}");
    }
    assert!(tl.iter().any(|t| t.contains("HTTP 500")), "{tl:?}");

    let calls = state.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), 3);
    let link = format!("{PUBLIC_URL}/#/incidents/{incident}");
    for call in &calls {
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/v1/messages");
        assert_eq!(call.query.get("account").map(String::as_str), Some("acme"));
        assert_eq!(
            call.query.get("to").map(String::as_str),
            Some("+8613812345678"),
            "the + percent-encoded in the URL"
        );
        assert_eq!(call.api_key.as_deref(), Some(api_key), "{{env:…}} read at start");
        assert_eq!(call.content_type.as_deref(), Some("application/json"));
        let body: Value = serde_json::from_str(&call.body).unwrap_or_else(|e| panic!("JSON body: {e}: {}", call.body));
        assert_eq!(body["to"], "+8613812345678");
        assert_eq!(body["sender"], "Gatehouse");
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains(ALARM_TEXT),
            "the quote and Chinese survive escaping: {text}"
        );
        assert!(text.contains(&link), "{text}");
        assert!(text.chars().count() <= 280, "cut to max_chars: {text}");
    }
    hub.shutdown().await;
    let logs = logs_text();
    assert!(!logs.contains(api_key), "the API key is never logged");
    assert!(!logs.contains("13812345678"), "the number is masked in logs");
}

#[tokio::test]
async fn an_sms_key_variable_missing_at_start_stops_the_hub_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint(dir.path());
    let key_env = format!("GATEHOUSE_TEST_SMS_KEY_UNSET_{}", std::process::id());
    let e = gatehouse_hub::start(hub_config(
        &dir.path().join("hub.db"),
        &sms_section("127.0.0.1:9".parse().unwrap(), &key_env, &pki.ca_file),
        "sms:+8613812345678",
    ))
    .await
    .expect_err("the hub refuses to start")
    .to_string();
    assert!(
        e.contains(&key_env) && e.contains("notify.sms.headers.X-Api-Key"),
        "{e}"
    );
}
