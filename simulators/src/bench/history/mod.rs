//! `gatehouse-sim bench history`: does the hub's ingest rate hold as the event history
//! grows? For one backend (SQLite in a temporary file, or a fresh PostgreSQL database on the
//! server `--database` names), at each level of stored events (e.g. 0, 1M, 5M, 10M, filled
//! in bulk by the database itself over ~30 days of partitions): the hub's own write path
//! (`events::queries`: the partition, the gateways' marks under lock, the multi-row insert,
//! the marks raised in one statement — in one transaction of `--rows-per-commit` rows from
//! 1,000 interleaved gateways) for `--duration`, with where each commit's time went; the
//! same rows into an append-only table without indexes (the machine's baseline, through
//! both insert shapes on PostgreSQL); and a device's last 24 h read through the API's query
//! (`events::queries::point_readings`), median and p99 of `--reads`. Then one retention
//! purge (drop of the oldest partition) timed. Figures printed, never asserted.
//!
//! Each level is written on a day of its own (the partition a hub writes on the day its
//! history reaches that level), so the levels differ by their history only; with
//! `--one-open-partition` every level goes to today's partition, which the earlier levels'
//! ingest has grown (what that costs is the open partition's size, not the history's).

mod queries;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gatehouse_hub::config::DatabaseUrl;
use gatehouse_hub::events::partitions::Partitions;
use gatehouse_hub::events::queries::{self as hub_events, EventRow, InsertShape, Progress};
use gatehouse_hub::store::{self, Backend, Pool};
use gatehouse_proto as pb;
use serde::Serialize;

use crate::cli::parse_duration;
use crate::harness::report::print_and_save;

const DAY_MS: i64 = 86_400_000;
/// The generated history spans this many days of ingested time before now.
const HISTORY_DAYS: i64 = 30;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// A PostgreSQL server URL (`postgres://user@host:port/db`): the bench creates a fresh
    /// database there and drops it after. Without it: SQLite in a temporary file.
    #[arg(long)]
    pub database: Option<String>,
    /// Stored events before each measurement, ascending (k and M suffixes).
    #[arg(long, default_value = "0,1M,5M,10M", value_parser = parse_levels)]
    pub levels: Levels,
    /// How long the ingest is measured at each level (the baseline: half of it).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Rows per transaction (the hub's writer groups up to 5,000).
    #[arg(long, default_value_t = 5000)]
    pub rows_per_commit: usize,
    /// Reads of a device's last 24 h at each level.
    #[arg(long, default_value_t = 200)]
    pub reads: usize,
    /// Measure every level into the one partition of today, which the earlier levels'
    /// ingest has grown (the method before issue 13's follow-up). Without it each level is
    /// measured into the partition of its own day, as a hub writes on the day its history
    /// reaches that level.
    #[arg(long)]
    pub one_open_partition: bool,
    /// The event insert of the hub's path: `values` or `unnest` (PostgreSQL only); without
    /// it, the hub's own for the backend.
    #[arg(long, value_parser = parse_shape)]
    pub insert: Option<InsertShape>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_shape(s: &str) -> Result<InsertShape, String> {
    match s {
        "values" => Ok(InsertShape::Values),
        "unnest" => Ok(InsertShape::Unnest),
        _ => Err(format!("not an insert shape (values, unnest): {s}")),
    }
}

/// Levels of stored events, as parsed from `0,1M,5M`.
#[derive(Debug, Clone)]
pub struct Levels(pub Vec<u64>);

fn parse_levels(s: &str) -> Result<Levels, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (digits, mult) = match part.chars().last() {
            Some('k' | 'K') => (&part[..part.len() - 1], 1_000),
            Some('m' | 'M') => (&part[..part.len() - 1], 1_000_000),
            _ => (part, 1),
        };
        let n: f64 = digits.parse().map_err(|_| format!("not a level: {part}"))?;
        if !(0.0..=1e10).contains(&n) {
            return Err(format!("level out of range: {part}"));
        }
        out.push((n * mult as f64).round() as u64);
    }
    if out.is_empty() {
        return Err("no levels".into());
    }
    if out.windows(2).any(|w| w[1] < w[0]) {
        return Err("levels must ascend".into());
    }
    Ok(Levels(out))
}

/// One level's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LevelFigures {
    pub stored: u64,
    pub fill_s: f64,
    pub ingest_rows_per_s: f64,
    /// The rows of a commit over the median commit's time (BEGIN to COMMIT): the rate less
    /// the stalls a disk shared with other work adds to a few commits.
    pub ingest_median_commit_rows_per_s: f64,
    pub baseline_rows_per_s: f64,
    pub read_last_24h_p50_ms: f64,
    pub read_last_24h_p99_ms: f64,
    pub rows_per_read: f64,
    /// An estate's device list (`GET /api/v1/devices`: each device's newest event and
    /// status), median.
    pub devices_list_p50_ms: f64,
    /// Events already in the partition the level's ingest writes to, when it began.
    pub open_partition_rows: i64,
    /// Where a commit's time went, mean per commit.
    pub phases: Phases,
    /// The append-only baseline through the other statement shape (PostgreSQL: UNNEST
    /// beside VALUES, or the reverse with `--insert unnest`; SQLite: none).
    pub baseline_other_shape_rows_per_s: Option<f64>,
}

/// The mean time per commit of the hub's write path, in ms: BEGIN and the marks read
/// under lock, the event insert (with the partition's row count), the marks raised, and
/// COMMIT.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phases {
    pub commits: u64,
    pub marks_ms: f64,
    pub insert_ms: f64,
    pub raise_ms: f64,
    pub commit_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub backend: String,
    pub rows_per_commit: usize,
    pub duration_s: f64,
    pub partition_hours: i64,
    /// Every level measured into today's one partition (`--one-open-partition`), or each
    /// into its own day's.
    pub one_open_partition: bool,
    /// The event insert measured (`values` or `unnest`: the hub's, or `--insert`).
    pub insert_shape: String,
    pub levels: Vec<LevelFigures>,
    /// Dropping the oldest partition (retention): its rows and the time, commit included.
    pub purge_rows: u64,
    pub purge_ms: f64,
    /// The rate at the top level over the rate at 0.
    pub ingest_kept: f64,
    /// The same for the median-commit rate.
    pub ingest_median_commit_kept: f64,
}

/// Runs `gatehouse-sim bench history`: prints the table and writes it with `--json`.
pub async fn command(args: HistoryArgs) -> anyhow::Result<()> {
    let report = run(&args).await?;
    print_and_save(&report.render(), &report, args.json.as_deref())
}

/// The database under test, removed after.
enum Target {
    Sqlite(PathBuf),
    Postgres { admin: String, name: String },
}

impl Target {
    async fn create(database: Option<&str>) -> anyhow::Result<(Target, DatabaseUrl)> {
        match database {
            None => {
                let dir =
                    std::env::temp_dir().join(format!("gatehouse-history-{}-{}", std::process::id(), pb::now_ms()));
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let url = DatabaseUrl::Sqlite(format!("sqlite://{}", dir.join("hub.db").display()));
                Ok((Target::Sqlite(dir), url))
            }
            Some(admin) => {
                use sqlx::Connection as _;
                let name = format!("gh_bench_{}_{}", std::process::id(), pb::now_ms());
                let mut conn = sqlx::PgConnection::connect(admin)
                    .await
                    .with_context(|| format!("connecting to {}", store::redact_url(admin)))?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                let mut url = url::Url::parse(admin).context("--database is a URL")?;
                url.set_path(&name);
                Ok((
                    Target::Postgres {
                        admin: admin.to_owned(),
                        name,
                    },
                    DatabaseUrl::Postgres(url.to_string()),
                ))
            }
        }
    }

    async fn remove(self) {
        match self {
            Target::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Target::Postgres { admin, name } => {
                use sqlx::Connection as _;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            }
        }
    }
}

pub async fn run(args: &HistoryArgs) -> anyhow::Result<HistoryReport> {
    let (target, url) = Target::create(args.database.as_deref()).await?;
    let result = measure(args, &url).await;
    target.remove().await;
    result
}

async fn measure(args: &HistoryArgs, url: &DatabaseUrl) -> anyhow::Result<HistoryReport> {
    let pool = store::open(url).await.context("opening the bench database")?;
    let backend = store::backend_of(&pool);
    let span_ms = DAY_MS;
    let mut partitions = Partitions::load(&pool, span_ms).await?;
    let now = pb::now_ms();
    {
        let mut tx = pool.begin().await?;
        queries::create_baseline(&mut tx, backend).await?;
        // The (empty) pre-partition table, as the hub's first tick drops it.
        partitions.drop_expired(&mut tx, 1, 10).await?;
        // Every day of the history, and today and tomorrow.
        for day in 0..=HISTORY_DAYS {
            partitions.partition_for(&mut tx, now - day * DAY_MS).await?;
        }
        // The 1,000 gateways (the writer's marks live in their rows).
        for g in 0..queries::GATEWAYS {
            let devices: Vec<pb::DeviceInfo> = (0..queries::DEVICES_PER_GATEWAY)
                .map(|d| pb::DeviceInfo {
                    device_id: format!("gw-{g}-dev-{d}"),
                    kind: pb::DeviceKind::Door as i32,
                    area: "fill".into(),
                })
                .collect();
            hub_events::gateway_hello(&mut tx, &format!("gw-{g}"), &estate_of(g), "bench", &devices, now).await?;
        }
        tx.commit().await?;
    }
    let mut stored = 0u64;
    let mut seq = 1_000_000_000i64;
    let mut levels = Vec::new();
    for (i, &level) in args.levels.0.iter().enumerate() {
        println!("history bench ({backend:?}): filling to {level} stored events …");
        let fill_began = Instant::now();
        fill(&pool, backend, &mut partitions, stored, level, now).await?;
        stored = stored.max(level);
        let fill_s = fill_began.elapsed().as_secs_f64();
        // The day this level is written on: today for every level with
        // `--one-open-partition`, else day `i` after today (its own partition, created by
        // the write path as the hub's would be; the events themselves occur now).
        let day = if args.one_open_partition { 0 } else { i64::try_from(i)? };
        let ingest_offset_ms = day * span_ms;
        {
            let mut tx = pool.begin().await?;
            partitions.partition_for(&mut tx, now + ingest_offset_ms).await?;
            tx.commit().await?;
        }
        let open_partition_rows = open_partition_rows(&pool, &partitions, pb::now_ms() + ingest_offset_ms).await?;
        settle(&pool, backend).await?;
        let shape = args.insert.unwrap_or_else(|| InsertShape::for_backend(backend));
        let (ingest, ingest_median, phases) = ingest(
            &pool,
            &mut partitions,
            &mut seq,
            args.rows_per_commit,
            args.duration,
            ingest_offset_ms,
            shape,
        )
        .await?;
        let (baseline, baseline_other_shape) = match shape.other(backend) {
            None => (
                ingest_baseline(&pool, &mut seq, args.rows_per_commit, args.duration / 2, shape).await?,
                None,
            ),
            // Half the time each, the measured shape first.
            Some(other) => (
                ingest_baseline(&pool, &mut seq, args.rows_per_commit, args.duration / 4, shape).await?,
                Some(ingest_baseline(&pool, &mut seq, args.rows_per_commit, args.duration / 4, other).await?),
            ),
        };
        let (p50, p99, per_read) = reads(&pool, args.reads).await?;
        let devices_p50 = device_lists(&pool, args.reads.clamp(1, 50)).await?;
        println!(
            "  {stored} stored ({open_partition_rows} in the open partition): ingest {ingest:.0} rows/s, append-only {baseline:.0} rows/s, last 24 h p50 {p50:.2} ms p99 {p99:.2} ms"
        );
        levels.push(LevelFigures {
            stored,
            fill_s,
            ingest_rows_per_s: ingest,
            ingest_median_commit_rows_per_s: ingest_median,
            baseline_rows_per_s: baseline,
            read_last_24h_p50_ms: p50,
            read_last_24h_p99_ms: p99,
            rows_per_read: per_read,
            devices_list_p50_ms: devices_p50,
            open_partition_rows,
            phases,
            baseline_other_shape_rows_per_s: baseline_other_shape,
        });
    }
    // Retention: drop the oldest partition, as the writer's tick does.
    let oldest = partitions.list().first().cloned();
    let (purge_rows, purge_ms) = match oldest {
        Some(p) => {
            let began = Instant::now();
            let mut tx = pool.begin().await?;
            let rows = partitions.drop_expired(&mut tx, p.end_ms, 1).await?.unwrap_or(0);
            tx.commit().await?;
            (rows, began.elapsed().as_secs_f64() * 1e3)
        }
        None => (0, 0.0),
    };
    pool.close().await;
    let first = levels.first().map_or(0.0, |l| l.ingest_rows_per_s);
    let last = levels.last().map_or(0.0, |l| l.ingest_rows_per_s);
    let first_median = levels.first().map_or(0.0, |l| l.ingest_median_commit_rows_per_s);
    let last_median = levels.last().map_or(0.0, |l| l.ingest_median_commit_rows_per_s);
    Ok(HistoryReport {
        backend: format!("{backend:?}").to_lowercase(),
        rows_per_commit: args.rows_per_commit,
        duration_s: args.duration.as_secs_f64(),
        partition_hours: span_ms / 3_600_000,
        one_open_partition: args.one_open_partition,
        insert_shape: format!("{:?}", args.insert.unwrap_or_else(|| InsertShape::for_backend(backend))).to_lowercase(),
        levels,
        purge_rows,
        purge_ms,
        ingest_kept: if first > 0.0 { last / first } else { 0.0 },
        ingest_median_commit_kept: if first_median > 0.0 {
            last_median / first_median
        } else {
            0.0
        },
    })
}

/// After a fill: the bulk write's aftermath (WAL checkpoint; on PostgreSQL the autovacuum
/// and statistics the fill would set off) done before measuring, so it is not charged to
/// the level's ingest.
async fn settle(pool: &Pool, backend: Backend) -> anyhow::Result<()> {
    let steps: &[&'static str] = match backend {
        Backend::Sqlite => &["PRAGMA wal_checkpoint(TRUNCATE)"],
        Backend::Postgres => &["VACUUM ANALYZE", "CHECKPOINT"],
    };
    for step in steps {
        sqlx::query(*step)
            .execute(pool)
            .await
            .with_context(|| format!("settling after the fill: {step}"))?;
    }
    Ok(())
}

fn estate_of(g: i64) -> String {
    format!("estate-{}", g % queries::ESTATES)
}

/// Adds `level - stored` generated events, spread evenly over the days of the history
/// (each day's share in its partition, in statements of at most 500,000 rows).
async fn fill(
    pool: &Pool,
    backend: Backend,
    partitions: &mut Partitions,
    stored: u64,
    level: u64,
    now: i64,
) -> anyhow::Result<()> {
    let add = i64::try_from(level.saturating_sub(stored))?;
    if add == 0 {
        return Ok(());
    }
    let days = HISTORY_DAYS;
    let mut first = i64::try_from(stored)?;
    for day in 0..days {
        let share = add / days + i64::from(day < add % days);
        // Day `day` of the history: `now - (days - day) days` to a day later.
        let t0 = now - (days - day) * DAY_MS;
        let mut done = 0;
        while done < share {
            let n = (share - done).min(500_000);
            // Rows of this statement are ingested over their slice of the day.
            let slice_t0 = t0 + DAY_MS * done / share;
            let slice_span = (DAY_MS * n / share).max(1);
            let mut tx = pool.begin().await?;
            // A slice may cross a partition boundary: split it there.
            let mut rest = n;
            let mut at = slice_t0;
            let mut row = first;
            while rest > 0 {
                let name = partitions.partition_for(&mut tx, at).await?;
                let end = partitions.covering(at).map_or(at + 1, |p| p.end_ms);
                let until = (slice_t0 + slice_span).min(end);
                let k = if until >= slice_t0 + slice_span {
                    rest
                } else {
                    (((until - at) as i128 * rest as i128) / ((slice_t0 + slice_span - at).max(1)) as i128) as i64
                }
                .clamp(1, rest);
                let inserted = queries::fill(&mut tx, backend, &name, row, k, at, (until - at).max(1)).await?;
                gatehouse_hub::events::partitions::queries::count_rows(&mut tx, &name, inserted).await?;
                row += k;
                rest -= k;
                at = until;
            }
            tx.commit().await?;
            first += n;
            done += n;
        }
    }
    Ok(())
}

/// `rows` events from 1,000 interleaved gateways (20 devices each), as the writer stores them.
fn batch(seq: &mut i64, rows: usize, now: i64) -> Vec<EventRow> {
    (0..rows)
        .map(|_| {
            *seq += 1;
            let g = *seq % queries::GATEWAYS;
            let gw = format!("gw-{g}");
            let device = format!("{gw}-dev-{}", (*seq / queries::GATEWAYS) % queries::DEVICES_PER_GATEWAY);
            let event = pb::Event {
                event_id: format!("{gw}-{seq}"),
                seq: u64::try_from(*seq).unwrap_or(0),
                gateway_id: gw.clone(),
                estate_id: estate_of(g),
                device_id: device.clone(),
                device_kind: pb::DeviceKind::Door as i32,
                area: "bench".into(),
                occurred_at_ms: now,
                received_at_ms: now,
                trace_context: Default::default(),
                body: Some(pb::event::Body::Access(pb::AccessEvent {
                    door: "bench-door".into(),
                    result: pb::AccessResult::Granted as i32,
                    credential: format!("{device}/{seq}"),
                    reason: String::new(),
                })),
            };
            gatehouse_hub::events::row(event, *seq)
        })
        .collect()
}

/// Rows/s through the hub's write path for `duration` (as `writer::transaction` does it:
/// marks read under lock, the rows above them inserted, the marks raised, one commit),
/// ingested `offset_ms` after now; the rate at the median commit; and where each commit's
/// time went.
async fn ingest(
    pool: &Pool,
    partitions: &mut Partitions,
    seq: &mut i64,
    rows_per_commit: usize,
    duration: Duration,
    offset_ms: i64,
    shape: InsertShape,
) -> anyhow::Result<(f64, f64, Phases)> {
    let mut stored = 0u64;
    let mut phases = Phases::default();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let mut commits: Vec<f64> = Vec::new();
    let began = Instant::now();
    while began.elapsed() < duration {
        let now = pb::now_ms();
        let ingested = now + offset_ms;
        let mut rows = batch(seq, rows_per_commit, now);
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in &rows {
            last.insert(r.gateway_id.clone(), r.seq);
        }
        let t = Instant::now();
        let whole = t;
        let mut tx = pool.begin().await?;
        let gateways: Vec<&str> = last.keys().map(String::as_str).collect();
        let marks: HashMap<String, i64> = hub_events::gateway_marks(&mut tx, &gateways)
            .await?
            .into_iter()
            .collect();
        rows.retain(|r| r.seq > marks.get(&r.gateway_id).copied().unwrap_or(0));
        phases.marks_ms += ms(t);
        let t = Instant::now();
        let name = partitions.partition_for(&mut tx, ingested).await?;
        stored += hub_events::insert_events_as(&mut tx, &name, &rows, ingested, shape).await?;
        phases.insert_ms += ms(t);
        let t = Instant::now();
        let progress: Vec<Progress<'_>> = last
            .iter()
            .map(|(g, s)| Progress {
                gateway: g,
                last_seq: *s,
                last_seen_ms: now,
            })
            .collect();
        hub_events::raise_marks(&mut tx, &progress).await?;
        phases.raise_ms += ms(t);
        let t = Instant::now();
        tx.commit().await?;
        phases.commit_ms += ms(t);
        phases.commits += 1;
        commits.push(whole.elapsed().as_secs_f64());
    }
    let rate = stored as f64 / began.elapsed().as_secs_f64();
    commits.sort_by(f64::total_cmp);
    let median = commits.get(commits.len() / 2).copied().unwrap_or(0.0);
    let per_commit = stored as f64 / commits.len().max(1) as f64;
    let median_rate = if median > 0.0 { per_commit / median } else { 0.0 };
    let n = phases.commits.max(1) as f64;
    phases.marks_ms /= n;
    phases.insert_ms /= n;
    phases.raise_ms /= n;
    phases.commit_ms /= n;
    Ok((rate, median_rate, phases))
}

/// The catalogue's count of the partition covering `t`.
async fn open_partition_rows(pool: &Pool, partitions: &Partitions, t: i64) -> anyhow::Result<i64> {
    let Some(open) = partitions.covering(t) else {
        return Ok(0);
    };
    Ok(gatehouse_hub::events::partitions::queries::counts(pool)
        .await?
        .into_iter()
        .find(|(name, _)| *name == open.name)
        .map_or(0, |(_, rows)| rows))
}

/// Rows/s of the same batches into the append-only table (no index, no marks, no progress).
async fn ingest_baseline(
    pool: &Pool,
    seq: &mut i64,
    rows_per_commit: usize,
    duration: Duration,
    shape: InsertShape,
) -> anyhow::Result<f64> {
    let mut stored = 0u64;
    let began = Instant::now();
    while began.elapsed() < duration {
        let now = pb::now_ms();
        // Sequence numbers of their own: these rows never reach the events partitions.
        let rows = batch(seq, rows_per_commit, now);
        let mut tx = pool.begin().await?;
        stored += hub_events::insert_events_as(&mut tx, "bench_append", &rows, now, shape).await?;
        tx.commit().await?;
    }
    Ok(stored as f64 / began.elapsed().as_secs_f64())
}

/// A random device's point readings of the last 24 h through the API's query: (p50 ms,
/// p99 ms, rows per read).
async fn reads(pool: &Pool, n: usize) -> anyhow::Result<(f64, f64, f64)> {
    let mut took = Vec::with_capacity(n);
    let mut rows = 0usize;
    for _ in 0..n {
        let g = fastrand::i64(0..queries::GATEWAYS);
        let d = fastrand::i64(0..queries::DEVICES_PER_GATEWAY);
        let now = pb::now_ms();
        let began = Instant::now();
        let got = hub_events::point_readings(
            pool,
            &estate_of(g),
            Some(&format!("gw-{g}-dev-{d}")),
            now - DAY_MS,
            now,
            1_000,
        )
        .await?;
        took.push(began.elapsed().as_secs_f64() * 1e3);
        rows += got.len();
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| {
        took.get(((took.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok((at(0.5), at(0.99), rows as f64 / n.max(1) as f64))
}

/// The median time of `n` device lists of a random estate.
async fn device_lists(pool: &Pool, n: usize) -> anyhow::Result<f64> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let estate = format!("estate-{}", fastrand::i64(0..queries::ESTATES));
        let began = Instant::now();
        hub_events::devices(pool, Some(&estate), pb::now_ms() - DAY_MS, 1_000).await?;
        took.push(began.elapsed().as_secs_f64() * 1e3);
    }
    took.sort_by(f64::total_cmp);
    Ok(took.get(took.len() / 2).copied().unwrap_or(0.0))
}

impl HistoryReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== gatehouse bench history ({}, {} rows/commit, {:.0} s per level, {} h partitions, {} insert, {}) ==",
            self.backend,
            self.rows_per_commit,
            self.duration_s,
            self.partition_hours,
            self.insert_shape,
            if self.one_open_partition {
                "every level into today's partition"
            } else {
                "each level into its own day's partition"
            }
        );
        let _ = writeln!(
            s,
            "{:>12} {:>14} {:>16} {:>8} {:>14} {:>14} {:>10} {:>14}",
            "stored",
            "ingest rows/s",
            "append-only r/s",
            "share",
            "24h read p50",
            "24h read p99",
            "rows/read",
            "devices p50"
        );
        for l in &self.levels {
            let _ = writeln!(
                s,
                "{:>12} {:>14.0} {:>16.0} {:>7.0}% {:>11.2} ms {:>11.2} ms {:>10.1} {:>11.2} ms",
                l.stored,
                l.ingest_rows_per_s,
                l.baseline_rows_per_s,
                if l.baseline_rows_per_s > 0.0 {
                    l.ingest_rows_per_s / l.baseline_rows_per_s * 100.0
                } else {
                    0.0
                },
                l.read_last_24h_p50_ms,
                l.read_last_24h_p99_ms,
                l.rows_per_read,
                l.devices_list_p50_ms
            );
        }
        let _ = writeln!(
            s,
            "{:>12} {:>14} {:>17} {:>8} {:>10} {:>10} {:>10} {:>10} {:>16}",
            "stored",
            "open part.",
            "median-commit r/s",
            "commits",
            "marks ms",
            "insert ms",
            "raise ms",
            "commit ms",
            "other shape r/s"
        );
        for l in &self.levels {
            let p = &l.phases;
            let _ = writeln!(
                s,
                "{:>12} {:>14} {:>17.0} {:>8} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>16}",
                l.stored,
                l.open_partition_rows,
                l.ingest_median_commit_rows_per_s,
                p.commits,
                p.marks_ms,
                p.insert_ms,
                p.raise_ms,
                p.commit_ms,
                l.baseline_other_shape_rows_per_s
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
            );
        }
        let _ = writeln!(
            s,
            "ingest at the top level / at the first: {:.0}% (at the median commit: {:.0}%)",
            self.ingest_kept * 100.0,
            self.ingest_median_commit_kept * 100.0
        );
        let _ = writeln!(
            s,
            "retention: dropping the oldest partition ({} events) took {:.1} ms",
            self.purge_rows, self.purge_ms
        );
        s
    }
}
