//! The event store over a real hub (SQLite, or PostgreSQL with GATEHOUSE_TEST_BACKEND):
//! duplicates dropped against each gateway's mark — a resent batch, after a restart, two
//! batches of one gateway in one writer transaction; partitions created ahead and at a day
//! boundary (ManualClock); retention dropping old partitions and deleting the alarm history
//! a small chunk per tick while ingest goes on; the marks of many gateways raised in one
//! statement (never lowered), and two writers on one PostgreSQL storing an overlapping
//! batch once.

use gatehouse_hub::ManualClock;
use gatehouse_hub::config::{DatabaseUrl, HubConfig};
use gatehouse_proto::{AccessEvent, AccessResult, Event, PointReading, Quality, event::Body};

mod common;
use common::Link;

const DAY_MS: i64 = 86_400_000;
/// A day boundary (partitions are aligned on days since the epoch).
const BOUNDARY: i64 = 20_420 * DAY_MS;

fn access(card: &str) -> Body {
    Body::Access(AccessEvent {
        door: "D1".into(),
        result: AccessResult::Granted as i32,
        credential: card.into(),
        reason: String::new(),
    })
}

fn config(dir: &tempfile::TempDir, extra: &str) -> (HubConfig, DatabaseUrl) {
    let config = common::config(&dir.path().join("hub.db"), &format!("{}{extra}", common::ESTATE_A));
    let url = config.database_url().unwrap();
    (config, url)
}

async fn scalar(url: &DatabaseUrl, sql: impl Into<String>) -> i64 {
    let pool = gatehouse_hub::store::open_read_only(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.into()))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// (partition, events it holds) from the catalogue, oldest first.
async fn partitions(url: &DatabaseUrl) -> Vec<(String, i64)> {
    let pool = gatehouse_hub::store::open_read_only(url).await.unwrap();
    let rows = gatehouse_hub::events::partitions::queries::counts(&pool).await.unwrap();
    pool.close().await;
    rows
}

/// Every stored seq of gw-1, in order (a duplicate would show twice).
async fn seqs(url: &DatabaseUrl) -> Vec<i64> {
    let pool = gatehouse_hub::store::open_read_only(url).await.unwrap();
    let rows: Vec<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE gateway_id = 'gw-1' ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

fn event(seq: u64) -> Event {
    Event {
        event_id: format!("ev-{seq}"),
        seq,
        gateway_id: "gw-1".into(),
        estate_id: "estate-a".into(),
        device_id: "door-1".into(),
        area: "main gate".into(),
        body: Some(access(&format!("card-{seq}"))),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_resent_batch_and_a_restart_store_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(BOUNDARY + 3_600_000);
    let (config, url) = config(&dir, "");
    let hub = common::start_at(config.clone(), &clock).await;
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    link.send_seqs(&[1, 2, 3], access("a")).await.unwrap();
    // The same batch again (its Ack was lost), then one overlapping it.
    link.send_seqs(&[1, 2, 3], access("a")).await.unwrap();
    link.send_seqs(&[2, 3, 4], access("a")).await.unwrap();
    assert_eq!(seqs(&url).await, vec![1, 2, 3, 4]);
    assert_eq!(
        common::metric(&hub, "gatehouse_hub_duplicates_dropped_total").await,
        5.0
    );
    hub.shutdown().await;

    // A restart: the mark comes back from the database, the gateway resends from 3.
    let hub = common::start_at(config, &clock).await;
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    assert_eq!(link.seq(), 4, "the Welcome carries the stored mark");
    link.send_seqs(&[3, 4, 5, 6], access("a")).await.unwrap();
    assert_eq!(seqs(&url).await, vec![1, 2, 3, 4, 5, 6]);
    hub.shutdown().await;
}

/// The test's runtime is single-threaded: both batches are queued before the writer runs,
/// so they are one group, one transaction.
#[tokio::test]
async fn two_batches_of_one_gateway_in_one_transaction_store_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(BOUNDARY + 3_600_000);
    let (config, url) = config(&dir, "");
    let hub = common::start_at(config, &clock).await;
    let _link = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    let writer = hub.writer();
    let first = writer
        .ingest("gw-1".into(), (1..=3).map(event).collect())
        .await
        .unwrap();
    let second = writer
        .ingest("gw-1".into(), (2..=5).map(event).collect())
        .await
        .unwrap();
    let a = first.await.unwrap().unwrap();
    let b = second.await.unwrap().unwrap();
    assert_eq!((a.stored, a.duplicates), (3, 0));
    assert_eq!((b.stored, b.duplicates), (2, 2));
    assert_eq!(seqs(&url).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(scalar(&url, "SELECT last_seq FROM gateways WHERE id = 'gw-1'").await, 5);
    hub.shutdown().await;
}

#[tokio::test]
async fn partitions_are_created_ahead_and_events_cross_a_day_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(BOUNDARY - 1_000);
    let (config, url) = config(&dir, "");
    let hub = common::start_at(config, &clock).await;
    hub.tick_now().await.unwrap();
    let names: Vec<String> = partitions(&url).await.into_iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        vec![format!("events_p{}", BOUNDARY - DAY_MS), format!("events_p{BOUNDARY}")],
        "today's partition and tomorrow's, ahead (the empty pre-partition table dropped)"
    );
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    link.send(vec![("door-1", "main gate", access("before"))]).await;
    clock.advance_ms(2_000);
    link.send(vec![("door-1", "main gate", access("after"))]).await;
    hub.tick_now().await.unwrap();
    assert_eq!(
        partitions(&url).await,
        vec![
            (format!("events_p{}", BOUNDARY - DAY_MS), 1),
            (format!("events_p{BOUNDARY}"), 1),
            (format!("events_p{}", BOUNDARY + DAY_MS), 0),
        ]
    );
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM events").await,
        2,
        "one name reads them all"
    );
    // A clock jump past every partition: the insert creates its own.
    clock.advance_ms(10 * DAY_MS);
    link.send(vec![("door-1", "main gate", access("later"))]).await;
    assert_eq!(scalar(&url, "SELECT COUNT(*) FROM events").await, 3);
    hub.shutdown().await;
}

const PUMP_RULE: &str =
    "\n[[rules.points]]\npoint = \"pump1_fault\"\nwhen = true\npriority = \"P3\"\nmessage = \"Duty pump tripped\"\n";

fn fault(value: f64) -> Body {
    Body::Point(PointReading {
        point: "pump1_fault".into(),
        value,
        quality: Quality::Good as i32,
        ..Default::default()
    })
}

#[tokio::test]
async fn retention_drops_old_partitions_and_chunks_the_alarm_history_while_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(BOUNDARY + 3_600_000);
    let extra = format!("{PUMP_RULE}\n[retention]\nevents_days = 2\nalarms_days = 3\npurge_batch = 1\n");
    let (config, url) = config(&dir, &extra);
    let hub = common::start_at(config, &clock).await;
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["plc-1"]).await;
    for v in [1.0, 0.0, 1.0, 0.0] {
        link.send(vec![("plc-1", "pump room", fault(v))]).await;
    }
    hub.tick_now().await.unwrap();
    // The history of these first hours (later rows, e.g. the gateway falling silent as the
    // clock jumps, are not past retention).
    let old = format!(
        "SELECT COUNT(*) FROM alarm_history WHERE at_ms < {}",
        BOUNDARY + 7_200_000
    );
    let history = scalar(&url, old.clone()).await;
    assert!(history >= 3, "raised, cleared, raised again, cleared: {history}");

    // Day 3: the first day's partition (the four readings) is past 2 days; the history
    // (3 days) not yet.
    clock.advance_ms(3 * DAY_MS);
    link.send(vec![("plc-1", "pump room", fault(0.0))]).await;
    hub.tick_now().await.unwrap();
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM events").await,
        1,
        "the old partition dropped"
    );
    assert_eq!(
        common::metric_or_zero(&hub, "gatehouse_hub_purged_rows_total{history=\"events\"}").await,
        4.0
    );
    assert_eq!(scalar(&url, old.clone()).await, history);

    // Day 4: the history is past 3 days; one row a tick, ingest going on between ticks.
    // (An event before each tick: the gateway is heard from, never silent.)
    clock.advance_ms(DAY_MS);
    link.send(vec![("plc-1", "pump room", fault(0.0))]).await;
    hub.tick_now().await.unwrap();
    let deleted = history - scalar(&url, old.clone()).await;
    // One chunk (1 row) a tick; the writer's own one-second tick may have run once too.
    assert!(
        (1..=2).contains(&deleted) && deleted < history,
        "{deleted} of {history}"
    );
    for _ in 0..history {
        link.send(vec![("plc-1", "pump room", fault(0.0))]).await;
        hub.tick_now().await.unwrap();
    }
    assert_eq!(scalar(&url, old).await, 0);
    assert_eq!(
        common::metric_or_zero(&hub, "gatehouse_hub_purged_rows_total{history=\"alarm_history\"}").await,
        history as f64
    );
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM events").await,
        1 + history + 1,
        "ingest went on through the purge"
    );
    hub.shutdown().await;
}

/// The writer's store path on its own (no hub): `open` and migrate, a partition, gateways
/// `ids` registered by their Hello.
async fn store_with_gateways(url: &DatabaseUrl, ids: &[String]) -> (gatehouse_hub::store::Pool, String) {
    use gatehouse_hub::events::{partitions::Partitions, queries};
    let pool = gatehouse_hub::store::open(url).await.unwrap();
    let mut partitions = Partitions::load(&pool, DAY_MS).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let partition = partitions.partition_for(&mut tx, BOUNDARY).await.unwrap();
    for id in ids {
        queries::gateway_hello(&mut tx, id, "estate-a", "test", &[], BOUNDARY)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    (pool, partition)
}

async fn marks(pool: &gatehouse_hub::store::Pool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT id, last_seq, last_seen_ms FROM gateways ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// `raise_marks`: one statement per 1,000 gateways raises each mark, never lowers one, counts
/// a gateway named twice once (its highest seq), and sets the last-seen time.
#[tokio::test]
async fn marks_raised_in_one_statement_never_go_down() {
    use gatehouse_hub::events::queries::{Progress, raise_marks};
    let dir = tempfile::tempdir().unwrap();
    let (_, url) = config(&dir, "");
    // 1,001 gateways: two statements.
    let ids: Vec<String> = (0..1_001).map(|i| format!("gw-{i:04}")).collect();
    let (pool, _) = store_with_gateways(&url, &ids).await;
    let p = |gateway: &'static str, last_seq, last_seen_ms| Progress {
        gateway,
        last_seq,
        last_seen_ms,
    };
    let mut conn = pool.acquire().await.unwrap();
    let updated = raise_marks(
        &mut conn,
        &[
            p("gw-0000", 5, 10),
            p("gw-0001", 3, 10),
            p("gw-0000", 4, 11),
            p("gw-none", 9, 10),
        ],
    )
    .await
    .unwrap();
    assert_eq!(updated, 2, "an unknown gateway has no row to raise");
    let got = marks(&pool).await;
    assert_eq!(got[0], ("gw-0000".into(), 5, 11), "its highest seq, its latest time");
    assert_eq!(got[1], ("gw-0001".into(), 3, 10));
    assert_eq!(got[2], ("gw-0002".into(), 0, BOUNDARY), "not named, not touched");

    // Lower seqs (and 0: only heard from) leave the marks; the time is set.
    raise_marks(&mut conn, &[p("gw-0000", 2, 20), p("gw-0001", 0, 20)])
        .await
        .unwrap();
    let got = marks(&pool).await;
    assert_eq!(&got[..2], &[("gw-0000".into(), 5, 20), ("gw-0001".into(), 3, 20)]);

    let all: Vec<Progress<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Progress {
            gateway: id,
            last_seq: 100 + i as i64,
            last_seen_ms: 30,
        })
        .collect();
    assert_eq!(raise_marks(&mut conn, &all).await.unwrap(), 1_001);
    let got = marks(&pool).await;
    assert!(
        got.iter().enumerate().all(|(i, m)| m.1 == 100 + i as i64 && m.2 == 30),
        "every gateway of both statements raised"
    );
    drop(conn);
    pool.close().await;
}

/// Two writers (two hubs on one PostgreSQL) storing overlapping batches of one gateway at
/// once: the second reads the mark under lock only after the first commits its rows and its
/// raised mark, so every event is stored once.
#[tokio::test]
async fn two_writers_store_an_overlapping_batch_once() {
    use gatehouse_hub::events::queries::{self, Progress};
    let test = "event_store::two_writers_store_an_overlapping_batch_once";
    let Some(server) = common::db::pg_server_or_skip(test) else {
        return;
    };
    let url = DatabaseUrl::Postgres(common::db::fresh_database(&server));
    let (pool, partition) = store_with_gateways(&url, &["gw-1".into(), "gw-2".into()]).await;

    // One writer's transaction: the rows of `seqs` above the mark, the mark raised; it holds
    // its locks for `hold` before committing.
    let write = |seqs: std::ops::RangeInclusive<u64>, hold: std::time::Duration| {
        let pool = pool.clone();
        let partition = partition.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            // gw-2 too: two gateways locked in one statement, in the same order by both.
            let marks = queries::gateway_marks(&mut tx, &["gw-2", "gw-1"]).await.unwrap();
            let mark = marks.iter().find(|m| m.0 == "gw-1").map_or(0, |m| m.1);
            let last = i64::try_from(*seqs.end()).unwrap();
            let rows: Vec<_> = seqs
                .filter(|s| i64::try_from(*s).unwrap() > mark)
                .map(|s| gatehouse_hub::events::row(event(s), i64::try_from(s).unwrap()))
                .collect();
            let stored = queries::insert_events(&mut tx, &partition, &rows, BOUNDARY)
                .await
                .unwrap();
            tokio::time::sleep(hold).await;
            let progress = [
                Progress {
                    gateway: "gw-1",
                    last_seq: last,
                    last_seen_ms: BOUNDARY,
                },
                Progress {
                    gateway: "gw-2",
                    last_seq: 0,
                    last_seen_ms: BOUNDARY,
                },
            ];
            queries::raise_marks(&mut tx, &progress).await.unwrap();
            tx.commit().await.unwrap();
            stored
        }
    };
    let first = tokio::spawn(write(1..=8, std::time::Duration::from_millis(500)));
    // The second starts while the first holds the lock.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second = tokio::spawn(write(5..=10, std::time::Duration::ZERO));
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((a, b), (8, 2), "the second stored only 9 and 10");
    assert_eq!(seqs(&url).await, (1..=10).collect::<Vec<i64>>());
    assert_eq!(marks(&pool).await[0].1, 10);
    pool.close().await;
}
