//! `gatehouse-sim bench history` run tiny (levels 0 and 20k, 2 s each) against real
//! databases: SQLite in a temporary file always, PostgreSQL when `GATEHOUSE_TEST_PG_URL` names
//! a server (skipped by name otherwise). The figures are printed, not asserted: the test
//! checks the run completes, fills to each level and measures something at each.

use std::time::Duration;

use gatehouse_sim::bench::history::{HistoryArgs, Levels, run};

/// SQLite: every level into today's partition (`--one-open-partition`); PostgreSQL: each
/// level into its own, the batch through UNNEST (`--insert unnest`, which the hub does not
/// use but the bench compares).
fn args(database: Option<String>) -> HistoryArgs {
    let on_postgres = database.is_some();
    HistoryArgs {
        database,
        levels: Levels(vec![0, 20_000]),
        duration: Duration::from_secs(2),
        rows_per_commit: 5_000,
        reads: 20,
        one_open_partition: !on_postgres,
        insert: on_postgres.then_some(gatehouse_hub::events::queries::InsertShape::Unnest),
        json: None,
    }
}

async fn check(database: Option<String>) {
    let args = args(database);
    let report = run(&args).await.expect("the history bench runs");
    print!("{}", report.render());
    let stored: Vec<u64> = report.levels.iter().map(|l| l.stored).collect();
    assert_eq!(stored, vec![0, 20_000]);
    for l in &report.levels {
        assert!(l.ingest_rows_per_s > 0.0, "{l:?}");
        assert!(l.baseline_rows_per_s > 0.0, "{l:?}");
        assert!(l.read_last_24h_p50_ms > 0.0, "{l:?}");
    }
    assert!(report.purge_rows > 0, "the oldest partition held filled rows");
    let second = &report.levels[1];
    if args.one_open_partition {
        assert!(second.open_partition_rows > 0, "the first level's rows: {second:?}");
        assert_eq!(report.insert_shape, "values");
    } else {
        assert_eq!(second.open_partition_rows, 0, "a partition of its own: {second:?}");
        assert_eq!(report.insert_shape, "unnest");
        assert!(
            second.baseline_other_shape_rows_per_s.is_some_and(|r| r > 0.0),
            "{second:?}"
        );
    }
}

#[tokio::test]
async fn history_bench_runs_on_sqlite() {
    check(None).await;
}

#[tokio::test]
async fn history_bench_runs_on_postgres() {
    let Some(url) = std::env::var("GATEHOUSE_TEST_PG_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: history_bench_runs_on_postgres needs PostgreSQL; set GATEHOUSE_TEST_PG_URL");
        return;
    };
    check(Some(url)).await;
}
