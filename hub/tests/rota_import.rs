//! Bulk rota actions against a running hub (issue 9, defect 6): a large CSV import must not
//! hold the hub's only writer, so a forced door still reaches the alarm book on time while
//! the import runs, and the import's cost grows linearly with its rows.
//!
//! Real gRPC in (a gateway stream played by hand), real HTTP, real SQLite.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::{DoorEvent, DoorEventType, event::Body};
use serde_json::Value;

mod common;

use common::{Link, get};

/// Estates of the synthetic region; each has a gate and a patrol post on day and night
/// shifts, so a local date holds `ESTATES * 4` slots.
const ESTATES: usize = 50;
const GUARDS: usize = 200;

/// The latency target this test holds a forced door to while an import runs: visible in
/// the alarm book within 1 s of being sent. The project's target is p99 ≤ 50 ms in a
/// release build; this is a debug build on a shared CI machine, and on main the import
/// held the writer for minutes, so 1 s separates "sliced" from "blocked" with room.
const ALARM_TARGET: Duration = Duration::from_secs(1);

/// The tests of this file measure time: one at a time, so they do not measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 2026-11-25 21:00 in Shanghai.
fn t0() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T21:00:00+08:00")
        .unwrap()
        .timestamp_millis()
}

fn config(db: &Path) -> HubConfig {
    let mut s = format!(
        r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "{}"

[tls]
plaintext = true

[[gateways]]
id = "gw-e0"
estate = "e0"
"#,
        common::db::database_url(db)
    );
    for e in 0..ESTATES {
        s.push_str(&format!(
            "\n[[estates]]\nid = \"e{e}\"\nname = \"Estate {e}\"\ntimezone = \"Asia/Shanghai\"\n"
        ));
    }
    for e in 0..ESTATES {
        for kind in ["gate", "patrol"] {
            s.push_str(&format!(
                "\n[[posts]]\nestate = \"e{e}\"\nid = \"e{e}-{kind}\"\nkind = \"{kind}\"\nshifts = [\"day\", \"night\"]\n"
            ));
        }
    }
    for g in 0..GUARDS {
        s.push_str(&format!(
            "\n[[guards]]\nid = \"g{g}\"\nname = \"Guard {g}\"\nhome_estate = \"e{}\"\n",
            g % ESTATES
        ));
    }
    common::with_admin(HubConfig::from_toml(&s).expect("test configuration is valid"))
}

/// `rows` CSV lines: every slot of the region from 2026-12-01 on, one guard each.
fn rota_csv(rows: usize) -> String {
    let mut out = String::from("date,estate,post,shift,guard\n");
    let first = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let mut n = 0;
    'days: for day in 0u64.. {
        let date = first + chrono::Days::new(day);
        for e in 0..ESTATES {
            for kind in ["gate", "patrol"] {
                for shift in ["day", "night"] {
                    if n == rows {
                        break 'days;
                    }
                    let g = (n * 7 + day as usize) % GUARDS;
                    out.push_str(&format!("{date},e{e},e{e}-{kind},{shift},g{g}\n"));
                    n += 1;
                }
            }
        }
    }
    out
}

async fn start(db: &Path) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db), Arc::new(ManualClock::new(t0())))
        .await
        .expect("hub starts")
}

/// Posts the CSV; the status, the answer and how long the request took.
async fn import(addr: std::net::SocketAddr, csv: String) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = common::admin_client()
        .post(format!("http://{addr}/api/v1/rota/import"))
        .body(csv)
        .send()
        .await
        .expect("the import request is answered");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// Active imported assignments, read from the database file itself.
async fn imported_rows(db: &Path) -> i64 {
    let pool = common::db::inspect_at(db).await;
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM rota_assignments WHERE status = 'active' AND source = 'import'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    n
}

fn forced(door: &str) -> Body {
    Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: door.into(),
        seconds: 0,
    })
}

/// Sends a forced door and returns how long until the alarm is in the alarm book (the Ack
/// follows the commit that wrote it; the API read confirms it is visible).
async fn forced_door_latency(hub: &RunningHub, link: &mut Link, door: &str) -> Duration {
    let sent = Instant::now();
    // Inside the 10 s the hand-played stream waits for any Ack, so this message is the one seen.
    tokio::time::timeout(
        Duration::from_secs(5),
        link.send(vec![("door-1", "main gate", forced(door))]),
    )
    .await
    .unwrap_or_else(|_| panic!("the forced door {door} was not committed within 5 s: the writer is held"));
    let condition = format!("door_forced:{door}");
    let alarms = get(hub, "/api/v1/alarms?estate=e0&limit=1000").await;
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["condition"] == condition.as_str()),
        "{condition} committed but not in the alarm book"
    );
    sent.elapsed()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40000_row_rota_import_does_not_delay_a_forced_door_alarm() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const ROWS: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let hub = start(&db).await;
    let mut link = Link::connect(&hub, "gw-e0", "e0", &["door-1"]).await;
    // Warm up: the first alarm of a hub pays for its first statements.
    forced_door_latency(&hub, &mut link, "warm-up").await;

    let csv = rota_csv(ROWS);
    let import = tokio::spawn(import(hub.http_addr(), csv));
    let mut latencies = Vec::new();
    let mut n = 0;
    while !import.is_finished() {
        n += 1;
        latencies.push(forced_door_latency(&hub, &mut link, &format!("D{n}")).await);
        // Pacing between samples, not an assertion.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, answer, took) = import.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], ROWS, "{answer}");
    assert_eq!(answer["added"], ROWS, "{answer}");
    assert_eq!(imported_rows(&db).await, ROWS as i64, "every row applied");

    latencies.sort();
    let max = *latencies.last().unwrap();
    let p50 = latencies[latencies.len() / 2];
    let metrics = common::admin_client()
        .get(format!("http://{}/metrics", hub.http_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let longest = metric(&metrics, "gatehouse_hub_rota_bulk_longest_turn_seconds");
    let slices = metric(&metrics, "gatehouse_hub_rota_bulk_slices_total");
    println!(
        "import of {ROWS} rows: {:.2} s; {} forced doors during it: p50 {} ms, max {} ms; \
         {slices:?} slices, longest writer turn {longest:?} s",
        took.as_secs_f64(),
        latencies.len(),
        p50.as_millis(),
        max.as_millis()
    );
    assert!(
        latencies.len() >= 3,
        "the import must run long enough to measure alarms during it (it took {took:?})"
    );
    assert!(
        max <= ALARM_TARGET,
        "a forced door took {max:?} to reach the alarm book during the import (target {ALARM_TARGET:?})"
    );
    assert_eq!(
        metric(&metrics, "gatehouse_hub_rota_bulk_rows_total"),
        Some(ROWS as f64)
    );
    // A figure for the record: one operator assignment against the 40,000 live assignments.
    let started = Instant::now();
    let (status, answer) = common::http(
        &hub,
        "POST",
        "/api/v1/rota/assignments",
        Some(serde_json::json!({"post": "e0-gate", "date": "2028-01-03", "shift": "day", "guard": "g1"})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    println!("one assignment after the import: {} ms", started.elapsed().as_millis());
    hub.shutdown().await;
}

/// Figures, not an assertion of speed: the import's time per row stays flat as the rows
/// grow (on main: 1,000 rows 1.9 s, 2,000 5.7 s, 4,000 13.8 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rota_import_costs_time_linear_in_its_rows() {
    let _serial = ONE_AT_A_TIME.lock().await;
    for rows in [1_000, 4_000, 16_000] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.db");
        let hub = start(&db).await;
        let (status, answer, took) = import(hub.http_addr(), rota_csv(rows)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["added"], rows, "{answer}");
        // Importing the same file again changes nothing.
        let (status, again, took_again) = import(hub.http_addr(), rota_csv(rows)).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["added"], 0, "{again}");
        assert_eq!(imported_rows(&db).await, rows as i64);
        println!(
            "import of {rows:>6} rows: {:>7.3} s ({:.1} µs/row, {} slices); again (no change): {:.3} s",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / rows as f64,
            answer["slices"],
            took_again.as_secs_f64()
        );
        hub.shutdown().await;
    }
}

/// Publishing a weekly plan is a bulk write too: it goes through the same slices (more than
/// `[rota] bulk_slice_slots` = 1,000 slots make at least two), every filled seat becomes an
/// assignment, and publishing the same plan again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_a_weekly_plan_of_1400_seats_is_applied_in_slices() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let hub = start(&db).await;
    let body = serde_json::json!({"week": "2026-11-30", "time_budget_ms": 300, "publish": true, "seed": 7});
    let (status, plan) = common::http(&hub, "POST", "/api/v1/rota/plan", Some(body.clone())).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["seats"], ESTATES * 2 * 2 * 7, "{}", plan["seats"]);
    let filled = plan["seats"].as_i64().unwrap() - plan["last"]["unfilled"].as_i64().unwrap();
    let published = &plan["published"];
    assert_eq!(published["added"], filled, "{published}");
    assert_eq!(published["slots"], ESTATES * 2 * 2 * 7, "{published}");
    assert!(published["slices"].as_i64().unwrap() >= 2, "{published}");
    let pool = common::db::inspect_at(&db).await;
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM rota_assignments WHERE status = 'active' AND source = 'plan'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(n, filled);
    let (status, again) = common::http(&hub, "POST", "/api/v1/rota/plan", Some(body)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["published"]["added"], 0, "{again}");
    assert_eq!(again["published"]["removed"], 0, "{again}");
    hub.shutdown().await;
}

/// A sliced import is still checked whole before anything is applied: one wrong row at the
/// end of 5,000 refuses the import (422, naming the row) and no slot changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_with_one_wrong_row_at_the_end_applies_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let hub = start(&db).await;
    let mut csv = rota_csv(5_000);
    csv.push_str("2026-12-01,e0,e0-gate,day,nobody\n");
    let (status, answer, _) = import(hub.http_addr(), csv).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("row 5001") && d.contains("unknown guard nobody")),
        "{answer}"
    );
    assert_eq!(imported_rows(&db).await, 0);
    hub.shutdown().await;
}
