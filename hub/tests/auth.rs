//! Sign-in (issue 12 §3): logins, sessions, API tokens, the cookie, the CommandCentre's
//! metadata — over real HTTP and gRPC against a running hub with sign-in required.

mod common;

use std::path::Path;

use gatehouse_hub::auth::users::hash_password;
use gatehouse_hub::{ManualClock, RunningHub};
use gatehouse_proto::WatchAlarmsRequest;
use gatehouse_proto::command_centre_client::CommandCentreClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Endpoint;

const T0: i64 = 1_764_000_000_000;
const ALICE_PW: &str = "alice-correct-horse";
const BOB_PW: &str = "bob-correct-horse";

fn users_toml() -> String {
    format!(
        "[auth]\nsession_ttl_min = 30\n\n\
         [[users]]\nname = \"alice\"\nrole = \"operator\"\nestates = [\"estate-a\"]\npassword_hash = \"{}\"\n\n\
         [[users]]\nname = \"bob\"\nrole = \"supervisor\"\npassword_hash = \"{}\"\ndisabled = true\n",
        hash_password(ALICE_PW).unwrap(),
        hash_password(BOB_PW).unwrap(),
    )
}

async fn start(db: &Path, clock: &ManualClock) -> RunningHub {
    common::start_at(
        common::config(db, &format!("{}\n{}", common::ESTATES_AB, users_toml())),
        clock,
    )
    .await
}

/// `method path` with optional JSON body and extra headers; status, headers, JSON answer.
async fn call(
    hub: &RunningHub,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, String)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("http://{}{path}", hub.http_addr());
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        "DELETE" => client.delete(url),
        "PATCH" => client.patch(url),
        _ => client.post(url),
    };
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("HTTP answers");
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.json().await.unwrap_or(Value::Null))
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

fn admin() -> Vec<(&'static str, String)> {
    bearer(common::ADMIN_TOKEN)
}

async fn login(hub: &RunningHub, user: &str, password: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    call(
        hub,
        "POST",
        "/api/v1/login",
        Some(json!({"user": user, "password": password})),
        &[],
    )
    .await
}

#[tokio::test]
async fn login_answers_the_same_for_unknown_user_and_wrong_password_and_throttles_failures() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;

    let (status, headers, body) = login(&hub, "alice", ALICE_PW).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ghs_"));
    assert_eq!(body["expires_at_ms"], T0 + 30 * 60_000);
    assert_eq!(
        body["user"],
        json!({"name": "alice", "role": "operator", "regions": [], "estates": ["estate-a"]})
    );
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with(&format!("gatehouse_session={token};")), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let (status, _, me) = call(&hub, "GET", "/api/v1/me", None, &bearer(&token)).await;
    assert_eq!(
        (status, me["name"].clone(), me["role"].clone()),
        (200, json!("alice"), json!("operator"))
    );

    let (s1, _, wrong) = login(&hub, "alice", "not-her-password").await;
    let (s2, _, unknown) = login(&hub, "nobody", "not-her-password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(
        wrong, unknown,
        "an unknown user and a wrong password get the same answer"
    );

    // Five failures from this source: even the right password is refused for a while.
    for _ in 0..3 {
        assert_eq!(login(&hub, "alice", "still-wrong-password").await.0, 401);
    }
    let (status, _, body) = login(&hub, "alice", ALICE_PW).await;
    assert_eq!(status, 429, "{body}");
    let text = reqwest::get(format!("http://{}/metrics", hub.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("gatehouse_hub_logins_failed_total 5"), "{text}");
    assert!(text.contains("gatehouse_hub_logins_throttled_total 1"), "{text}");
    clock.advance_s(61);
    assert_eq!(login(&hub, "alice", ALICE_PW).await.0, 200, "the refusal ends");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_session_expires_and_logout_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;

    let (_, _, body) = login(&hub, "alice", ALICE_PW).await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&hub, "GET", "/api/v1/alarms", None, &bearer(&token)).await.0, 200);
    clock.advance_s(30 * 60);
    let (status, _, body) = call(&hub, "GET", "/api/v1/alarms", None, &bearer(&token)).await;
    assert_eq!(status, 401, "expired: {body}");

    let (_, _, body) = login(&hub, "alice", ALICE_PW).await;
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, headers, _) = call(&hub, "POST", "/api/v1/logout", None, &bearer(&token)).await;
    assert_eq!(status, 204);
    assert!(headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(call(&hub, "GET", "/api/v1/me", None, &bearer(&token)).await.0, 401);
    hub.shutdown().await;
}

#[tokio::test]
async fn no_credentials_is_401_on_the_api_and_the_board_and_probes_stay_public() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    for path in [
        "/api/v1/alarms",
        "/api/v1/me",
        "/api/v1/stream",
        "/api/v1/no-such-route",
    ] {
        let (status, _, body) = call(&hub, "GET", path, None, &[]).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: a JSON error");
    }
    assert_eq!(
        call(&hub, "POST", "/api/v1/alarms/1/ack", Some(json!({})), &[]).await.0,
        401
    );
    assert_eq!(
        call(&hub, "GET", "/api/v1/alarms", None, &bearer("wrong-token"))
            .await
            .0,
        401
    );
    assert_eq!(
        call(&hub, "GET", "/api/v1/alarms", None, &bearer("ghs_00")).await.0,
        401
    );
    for path in ["/", "/healthz", "/readyz", "/metrics"] {
        let r = reqwest::get(format!("http://{}{path}", hub.http_addr())).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} is public");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn an_admin_creates_uses_lists_and_revokes_api_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;

    let (status, _, made) = call(
        &hub,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "bms-bridge", "role": "facility", "estates": ["estate-b"], "expires_in_days": 30})),
        &admin(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ght_"));
    let (status, _, me) = call(&hub, "GET", "/api/v1/me", None, &bearer(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (me["name"].clone(), me["role"].clone()),
        (json!("bms-bridge"), json!("facility"))
    );

    let (status, _, list) = call(&hub, "GET", "/api/v1/tokens", None, &admin()).await;
    assert_eq!(status, 200);
    assert!(!list.to_string().contains(&token[4..]), "no secret in the list: {list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "bms-bridge" && t["source"] == "api")
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "test-admin" && t["source"] == "config")
    );

    // Only an admin manages tokens and users.
    let (_, _, alice) = login(&hub, "alice", ALICE_PW).await;
    let alice = bearer(alice["token"].as_str().unwrap());
    let (status, _, _) = call(
        &hub,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "x", "role": "admin"})),
        &alice,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(call(&hub, "GET", "/api/v1/users", None, &alice).await.0, 403);

    let id = made["id"].as_i64().unwrap();
    assert_eq!(
        call(&hub, "DELETE", &format!("/api/v1/tokens/{id}"), None, &admin())
            .await
            .0,
        204
    );
    assert_eq!(
        call(&hub, "GET", "/api/v1/me", None, &bearer(&token)).await.0,
        401,
        "revoked"
    );
    assert_eq!(
        call(&hub, "DELETE", &format!("/api/v1/tokens/{id}"), None, &admin())
            .await
            .0,
        404
    );

    // A token that expires.
    let (_, _, short) = call(
        &hub,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "short", "role": "operator", "expires_in_days": 1})),
        &admin(),
    )
    .await;
    let short = short["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&hub, "GET", "/api/v1/me", None, &bearer(&short)).await.0, 200);
    clock.advance_s(86_400);
    assert_eq!(
        call(&hub, "GET", "/api/v1/me", None, &bearer(&short)).await.0,
        401,
        "expired"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_disabled_user_is_refused_and_disabling_ends_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;

    let (status, _, body) = login(&hub, "bob", BOB_PW).await;
    assert_eq!(status, 401, "bob is disabled in the config: {body}");

    let (status, _, carol) = call(
        &hub,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "carol", "role": "supervisor", "password": "carol-correct-horse"})),
        &admin(),
    )
    .await;
    assert_eq!(status, 201, "{carol}");
    assert!(carol.get("password_hash").is_none());
    let (status, _, again) = call(
        &hub,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "carol", "role": "supervisor", "password": "carol-correct-horse"})),
        &admin(),
    )
    .await;
    assert_eq!(status, 409, "{again}");
    let (status, _, session) = login(&hub, "carol", "carol-correct-horse").await;
    assert_eq!(status, 200, "{session}");
    let carol_token = session["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&hub, "GET", "/api/v1/me", None, &bearer(&carol_token)).await.0,
        200
    );

    let (status, _, body) = call(
        &hub,
        "PATCH",
        "/api/v1/users/carol",
        Some(json!({"disabled": true})),
        &admin(),
    )
    .await;
    assert_eq!((status, body["disabled"].clone()), (200, json!(true)));
    assert_eq!(
        call(&hub, "GET", "/api/v1/me", None, &bearer(&carol_token)).await.0,
        401
    );
    assert_eq!(login(&hub, "carol", "carol-correct-horse").await.0, 401);

    // Config users are changed in the config.
    let (status, _, _) = call(
        &hub,
        "PATCH",
        "/api/v1/users/alice",
        Some(json!({"disabled": true})),
        &admin(),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(call(&hub, "DELETE", "/api/v1/users/carol", None, &admin()).await.0, 204);
    let (_, _, users) = call(&hub, "GET", "/api/v1/users", None, &admin()).await;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_session_cookie_works_for_get_and_the_stream_and_changes_need_json() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let (_, _, body) = login(&hub, "alice", ALICE_PW).await;
    let cookie = vec![(
        "cookie",
        format!("gatehouse_session={}", body["token"].as_str().unwrap()),
    )];

    let (status, _, me) = call(&hub, "GET", "/api/v1/me", None, &cookie).await;
    assert_eq!((status, me["name"].clone()), (200, json!("alice")));
    let r = reqwest::Client::new()
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .header("cookie", &cookie[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(r);

    // A change on the cookie alone must be JSON (a cross-site form cannot send that).
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/logout", hub.http_addr()))
        .header("cookie", &cookie[0].1)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (status, _, _) = call(&hub, "POST", "/api/v1/logout", Some(json!({})), &cookie).await;
    assert_eq!(status, 204);
    assert_eq!(
        call(&hub, "GET", "/api/v1/me", None, &cookie).await.0,
        401,
        "the old session is refused"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn the_command_centre_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let channel = Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = CommandCentreClient::new(channel.clone());
    let err = anonymous
        .watch_alarms(WatchAlarmsRequest::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    let with = |token: String| {
        move |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(r)
        }
    };
    let mut wrong = CommandCentreClient::with_interceptor(channel.clone(), with("nope".into()));
    let err = wrong.watch_alarms(WatchAlarmsRequest::default()).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // A session token works as well as an API token.
    let (_, _, body) = login(&hub, "alice", ALICE_PW).await;
    let mut alice = CommandCentreClient::with_interceptor(channel, with(body["token"].as_str().unwrap().into()));
    let mut watch = alice
        .watch_alarms(WatchAlarmsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some(), "the snapshot starts");
    hub.shutdown().await;
}

#[tokio::test]
async fn passwords_and_tokens_are_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = dir.path().join("hub.db");
    let hub = start(&db, &clock).await;
    let (_, _, body) = login(&hub, "alice", ALICE_PW).await;
    let session = body["token"].as_str().unwrap().to_owned();
    let (_, _, _) = call(
        &hub,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "dave", "role": "operator", "password": "dave-secret-password"})),
        &admin(),
    )
    .await;
    let (_, _, made) = call(
        &hub,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "t", "role": "operator"})),
        &admin(),
    )
    .await;
    let api_token = made["token"].as_str().unwrap().to_owned();
    hub.shutdown().await;

    let stored = common::db::stored_text(&db).await;
    for secret in [ALICE_PW, "dave-secret-password", &session[4..], &api_token[4..]] {
        assert!(!stored.contains(secret), "{secret} stored in clear");
    }
    assert!(stored.contains("$argon2id$"), "the hashes are there");
}

#[tokio::test]
async fn sign_ins_failures_sign_outs_and_account_changes_are_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;

    let (status, _, _) = login(&hub, "alice", "not her password").await;
    assert_eq!(status, 401);
    let (status, _, body) = login(&hub, "alice", ALICE_PW).await;
    assert_eq!(status, 200, "{body}");
    let session = body["token"].as_str().unwrap().to_owned();
    let (status, _, _) = call(&hub, "POST", "/api/v1/logout", None, &bearer(&session)).await;
    assert_eq!(status, 204);
    let (status, _, body) = call(
        &hub,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "carol", "role": "operator", "password": "carol-correct-horse"})),
        &admin(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = call(
        &hub,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "bridge", "role": "operator"})),
        &admin(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().expect("the token's id");
    let (status, _, _) = call(&hub, "DELETE", &format!("/api/v1/tokens/{id}"), None, &admin()).await;
    assert_eq!(status, 204);

    let (status, _, log) = call(&hub, "GET", "/api/v1/audit", None, &admin()).await;
    assert_eq!(status, 200, "{log}");
    let rows = log["rows"]
        .as_array()
        .or_else(|| log.as_array())
        .expect("audit rows")
        .clone();
    let row = |action: &str, target: &str| {
        rows.iter()
            .find(|r| r["action"] == action && r["target"] == target)
            .unwrap_or_else(|| panic!("{action} on {target}: {rows:#?}"))
            .clone()
    };
    let failed = row("auth.login_failed", "user:alice");
    assert_eq!(
        (failed["actor"].as_str(), failed["role"].as_str()),
        (Some("alice"), Some("none"))
    );
    assert_eq!(failed["source"], "127.0.0.1");
    let ok = row("auth.login", "user:alice");
    assert_eq!(ok["role"], "operator");
    assert_eq!(row("auth.logout", "user:alice")["actor"], "alice");
    assert_eq!(row("user.create", "user:carol")["actor"], "test-admin");
    assert_eq!(row("token.create", &format!("token:{id}"))["actor"], "test-admin");
    assert_eq!(row("token.revoke", &format!("token:{id}"))["actor"], "test-admin");
    // No secret reaches the log.
    assert!(!log.to_string().contains(ALICE_PW) && !log.to_string().contains(&session));
    let (_, _, verdict) = call(&hub, "GET", "/api/v1/audit/verify", None, &admin()).await;
    assert_eq!(verdict["intact"], true, "{verdict}");
    hub.shutdown().await;
}
