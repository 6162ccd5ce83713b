//! An existing SQLite database, made by migrations 0001–0010 when flags were BOOLEAN columns
//! (alarms, incidents, incident steps, notifications, gateways, devices, command results),
//! upgrades through 0011 (flags as INTEGER 0/1, which sqlx's `Any` driver reads) with every
//! flag value intact, and a hub started on it reads them. SQLite only, whatever backend the
//! rest of the suite runs on: PostgreSQL databases never had the BOOLEAN-on-SQLite problem.

use std::sync::Arc;

use gatehouse_hub::{HubConfig, ManualClock};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

mod common;

const T0: i64 = 1_764_000_000_000;

/// The flag columns 0011 rewrites, as (table, column).
const FLAGS: &[(&str, &str)] = &[
    ("gateways", "connected"),
    ("alarms", "active"),
    ("alarms", "acknowledged"),
    ("alarms", "latched"),
    ("alarms", "suppressed"),
    ("alarms", "out_of_service"),
    ("alarms", "chattering"),
    ("command_results", "ok"),
    ("devices", "state_unknown"),
    ("incidents", "flood_group"),
    ("incidents", "response_breached"),
    ("incident_steps", "mandatory"),
    ("notifications", "urgent"),
];

/// One row per table with every flag set (TRUE, as the hub wrote them before 0011), and a
/// second alarm and incident with every flag clear.
const ROWS: &[&str] = &[
    "INSERT INTO gateways (id, estate_id, connected) VALUES ('gw-1', 'estate-a', TRUE)",
    "INSERT INTO devices (gateway_id, device_id, estate_id, kind, area, state_unknown) \
     VALUES ('gw-1', 'door-1', 'estate-a', 'door', 'block 1', TRUE)",
    "INSERT INTO alarms (estate_id, device_id, gateway_id, area, condition, priority, category, message, \
     active, acknowledged, latched, suppressed, out_of_service, chattering, activations, raised_at_ms, \
     changed_at_ms) VALUES ('estate-a', 'door-1', 'gw-1', 'block 1', 'door_forced:main', 'P2', 'security', \
     'Door forced', TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, 3, 1764000000000, 1764000000000)",
    "INSERT INTO alarms (estate_id, device_id, gateway_id, area, condition, priority, category, message, \
     active, acknowledged, latched, suppressed, out_of_service, chattering, activations, raised_at_ms, \
     changed_at_ms) VALUES ('estate-a', 'door-1', 'gw-1', 'block 1', 'door_held:main', 'P3', 'security', \
     'Door held open', FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, 1, 1764000000000, 1764000000000)",
    "INSERT INTO incidents (estate_id, area, category, priority, title, state, opened_at_ms, opened_by, \
     last_alarm_at_ms, state_changed_at_ms, policy, flood_group, response_breached) VALUES ('estate-a', \
     'block 1', 'security', 'P2', 'Flooded', 'open', 1764000000000, 'system', 1764000000000, \
     1764000000000, 'default', TRUE, TRUE)",
    "INSERT INTO incidents (estate_id, area, category, priority, title, state, opened_at_ms, opened_by, \
     last_alarm_at_ms, state_changed_at_ms, policy, flood_group, response_breached) VALUES ('estate-a', \
     'block 2', 'security', 'P3', 'Quiet', 'open', 1764000000000, 'system', 1764000000000, \
     1764000000000, 'default', FALSE, FALSE)",
    "INSERT INTO incident_steps (incident_id, idx, step_id, text, mandatory, status) \
     VALUES (1, 0, 'call', 'Call the guard', TRUE, 'open')",
    "INSERT INTO notifications (kind, role, recipient, channel, body, status, next_attempt_at_ms, \
     created_at_ms, urgent) VALUES ('incident', 'supervisor', 'Sam', 'log', 'body', 'sent', 1764000000000, \
     1764000000000, TRUE)",
    "INSERT INTO command_results (gateway_id, command_id, device_id, ok, message, received_at_ms) \
     VALUES ('gw-1', 'cmd-1', 'door-1', TRUE, 'done', 1764000000000)",
];

#[tokio::test]
async fn a_database_of_migrations_0001_to_0010_keeps_its_flags_through_0011_and_the_hub_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let options = SqliteConnectOptions::new().filename(&db).create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();

    // The database as a hub of migrations 0001–0010 left it.
    let all = sqlx::migrate!("./migrations/sqlite");
    assert!(all.migrations.len() >= 11, "this test knows migrations up to 0011");
    let mut old = sqlx::migrate!("./migrations/sqlite");
    old.migrations = std::borrow::Cow::Owned(old.migrations[..10].to_vec());
    old.run(&pool).await.unwrap();
    for row in ROWS {
        sqlx::query(sqlx::AssertSqlSafe(*row))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{row}: {e}"));
    }

    // 0011, as the next hub start runs it.
    all.run(&pool).await.unwrap();
    for (table, column) in FLAGS {
        let (kind, set): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT typeof({column}), {column} FROM {table} ORDER BY rowid LIMIT 1"
        )))
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{table}.{column}: {e}"));
        assert_eq!((kind.as_str(), set), ("integer", 1), "{table}.{column} after 0011");
    }
    for table in ["alarms", "incidents"] {
        let clear: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT flags FROM (SELECT rowid AS r, {} AS flags FROM {table}) ORDER BY r",
            FLAGS
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, c)| *c)
                .collect::<Vec<_>>()
                .join(" + ")
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(clear[1], (0,), "{table}: the cleared row stays cleared");
    }
    pool.close().await;

    // A hub on the upgraded file reads the flags (through `Any`, as INTEGER).
    let config = HubConfig::from_toml(&format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\
         hub_id = \"hub-test\"\n\n[tls]\nplaintext = true\n\n[[gateways]]\nid = \"gw-1\"\nestate = \"estate-a\"\n\n{}",
        db.display(),
        common::ESTATE_A
    ))
    .map(common::with_admin)
    .expect("test configuration is valid");
    let clock = ManualClock::new(T0);
    let hub = gatehouse_hub::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the hub starts on the upgraded database");

    let alarms = common::get(&hub, "/api/v1/alarms").await;
    let forced = alarms
        .as_array()
        .and_then(|a| a.iter().find(|a| a["condition"] == "door_forced:main"))
        .unwrap_or_else(|| panic!("the forced-door alarm: {alarms}"));
    for flag in ["active", "acknowledged", "latched", "out_of_service", "chattering"] {
        assert_eq!(forced[flag], true, "alarm {flag}: {forced}");
    }
    let held = alarms
        .as_array()
        .and_then(|a| a.iter().find(|a| a["condition"] == "door_held:main"));
    if let Some(held) = held {
        for flag in ["active", "acknowledged", "latched", "out_of_service", "chattering"] {
            assert_eq!(held[flag], false, "alarm {flag}: {held}");
        }
    }

    let flooded = common::get(&hub, "/api/v1/incidents/1").await;
    let incident = if flooded["incident"].is_object() {
        &flooded["incident"]
    } else {
        &flooded
    };
    assert_eq!(
        (&incident["flood_group"], &incident["response_breached"]),
        (&serde_json::json!(true), &serde_json::json!(true)),
        "{flooded}"
    );
    let quiet = common::get(&hub, "/api/v1/incidents/2").await;
    let incident = if quiet["incident"].is_object() {
        &quiet["incident"]
    } else {
        &quiet
    };
    assert_eq!(
        (&incident["flood_group"], &incident["response_breached"]),
        (&serde_json::json!(false), &serde_json::json!(false)),
        "{quiet}"
    );
    hub.shutdown().await;
}
