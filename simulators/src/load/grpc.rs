//! `load --via grpc`: one synthetic gateway stream per estate against the hub alone (no
//! gateway processes, no MQTT). Loss is checked in the hub's database when there is one,
//! else by the hub's Acks.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use gatehouse_proto as pb;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{LoadOptions, analysis::analyse, report::LoadReport, start_hub};
use crate::harness::{
    alarms::AlarmClock,
    gateway_stream::{StreamPlan, run_stream},
    hub::load_estates,
    latency::{LATENCY_MAX_MS, Latency, Summary},
    metrics::{hub_figures, scrape},
    procfs::process_figures,
    progress::Progress,
    report::mib,
    tally::Tally,
};

/// `--via grpc`: N synthetic gateway streams against the hub alone.
pub(super) async fn drive(opts: &LoadOptions, data_dir: &Path) -> anyhow::Result<LoadReport> {
    let specs = load_estates(opts.estates);
    let mut hub = start_hub(opts, data_dir, &specs).await?;
    println!(
        "load: hub gRPC {} ({}); opening {} synthetic gateway streams",
        hub.grpc_url,
        if hub.process.is_some() {
            "child process"
        } else {
            "already running"
        },
        opts.estates
    );
    let alarms = AlarmClock::default();
    let watch_stop = CancellationToken::new();
    let _watch_guard = watch_stop.clone().drop_guard();
    if opts.alarm_every > 0 {
        match &hub.http_base {
            Some(base) => alarms.watch(base, watch_stop.clone()).await?,
            None => println!("load: no --hub-api: alarm visibility is not measured"),
        }
    }
    // Gateway ids unique to this run, so an already running hub starts them at seq 1.
    let run = if hub.process.is_some() {
        String::new()
    } else {
        format!("-r{}", pb::now_ms() % 100_000_000)
    };
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let per_stream = opts.rate / opts.estates as f64;
    // Time for every stream to connect before the clock starts.
    let began = Instant::now() + Duration::from_millis(500 + 3 * opts.estates as u64);
    let end = began + opts.duration;
    let mut tasks = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let gateway = format!("gw-{}{run}", spec.id);
        let plan = StreamPlan {
            index: i,
            devices: (0..opts.devices_per_estate.max(1))
                .map(|k| format!("{gateway}-dev-{k:03}"))
                .collect(),
            gateway,
            estate: spec.id.clone(),
            rate: per_stream,
            batch_every: opts.grpc_batch,
            alarm_every: opts.alarm_every,
            began,
            end,
            drain: opts.drain_stall.max(Duration::from_secs(5)),
        };
        tasks.spawn(run_stream(
            plan,
            hub.grpc_url.clone(),
            sent.clone(),
            acked.clone(),
            alarms.clone(),
        ));
    }
    tokio::time::sleep_until(began.into()).await;
    let cpu_at_start = hub.cpu_s();
    let progress = Progress::new();
    let mut tick = tokio::time::interval_at((began + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let (mut last_sent, mut last_at, mut last_cpu) = (0, began, cpu_at_start);
    let mut streams = Vec::with_capacity(opts.estates);
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(t)) => streams.push(t),
                Some(Err(e)) => bail!("a stream task failed: {e}"),
                None => {}
            },
            now = tick.tick() => {
                let now = now.into_std();
                hub.sample()?;
                let total = sent.load(Relaxed);
                let dt = now.duration_since(last_at).as_secs_f64();
                let rate = (total - last_sent) as f64 / dt;
                let cpu = hub.cpu_s();
                let cpu_pct = match (cpu, last_cpu) {
                    (Some(c), Some(l)) => format!("{:.0}%", (c - l) / dt * 100.0),
                    _ => "?".into(),
                };
                (last_sent, last_at, last_cpu) = (total, now, cpu);
                let rss = hub.process.as_ref().map_or(0, |p| p.rss_max_kib);
                progress.show(
                    now.duration_since(began),
                    opts.duration,
                    &format!(
                        "sent {total:>9} ({rate:>7.0}/s) acked {:>9}  alarms {}/{}  hub cpu {cpu_pct} rss {}",
                        acked.load(Relaxed),
                        alarms.seen_count(),
                        alarms.sent_count(),
                        mib(rss)
                    ),
                );
            }
        }
    }
    progress.done();
    let run_s = began.elapsed().as_secs_f64();
    hub.sample()?;
    let cpu_at_end = hub.cpu_s();
    alarms.settle(Duration::from_secs(5)).await;
    watch_stop.cancel();

    let total_sent = sent.load(Relaxed);
    let total_acked = acked.load(Relaxed);
    let stream_errors: Vec<String> = streams.iter().filter_map(|s| s.error.clone()).collect();
    let mut ack = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).context("histogram")?;
    for s in &streams {
        ack.add(&s.ack_us).context("merging ack histograms")?;
    }
    let tallies: Vec<Tally> = streams.into_iter().flat_map(|s| s.devices).collect();
    let (alarm_latency, alarms_missing) = alarms.latency();

    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let hub_metrics = match &hub.http_base {
        Some(base) => scrape(&client, base).await,
        None => None,
    };
    let hub_figures = hub_figures(hub_metrics.as_ref());
    let (analysis, checked_by) = match &hub.db {
        Some(db) => (
            Some(analyse(db, &tallies).await?),
            "hub database: every tag sent, counted",
        ),
        None => (
            None,
            "hub acks only (no --hub-db): lost = sent - acknowledged; duplicates not checkable",
        ),
    };
    let hub_process = hub.figures();
    if let Some(db) = hub.db.take() {
        db.close().await;
    }
    drop(hub);

    let (stored, lost, duplicated, unexpected, span_s, e2e) = match &analysis {
        Some(a) => (
            a.stored,
            a.lost,
            a.duplicated,
            a.unexpected,
            a.span_s,
            Latency::from_histogram(&a.e2e),
        ),
        None => (
            total_acked,
            total_sent.saturating_sub(total_acked),
            0,
            0,
            run_s,
            Latency::default(),
        ),
    };
    let hub_cpu_percent = match (cpu_at_start, cpu_at_end) {
        (Some(a), Some(b)) if run_s > 0.0 => Some((b - a) / run_s * 100.0),
        _ => None,
    };
    Ok(LoadReport {
        via: "grpc".into(),
        checked_by: checked_by.into(),
        estates: opts.estates,
        devices_per_estate: opts.devices_per_estate,
        target_rate: opts.rate,
        duration_s: opts.duration.as_secs_f64(),
        data_dir: data_dir.display().to_string(),
        sent: total_sent,
        publish_errors: stream_errors.len() as u64,
        offered_rate: total_sent as f64 / opts.duration.as_secs_f64(),
        stored,
        lost,
        duplicated,
        unexpected,
        drained: stream_errors.is_empty(),
        drain_s: (run_s - opts.duration.as_secs_f64()).max(0.0),
        span_s,
        sustained_rate: if span_s > 0.0 { stored as f64 / span_s } else { 0.0 },
        latency_ms: e2e,
        to_gateway_ms: Latency::default(),
        gateway_to_hub_ms: Latency::default(),
        ack_latency_ms: Some(Latency::from_micros(&ack)),
        alarm_latency_ms: (opts.alarm_every > 0).then_some(alarm_latency),
        alarms_sent: alarms.sent_count(),
        alarms_missing,
        gateways: Vec::new(),
        gateway_rss_kib: Summary::default(),
        gateway_hwm_kib: Summary::default(),
        sim_process: process_figures(std::process::id()),
        hub_process: hub_process.as_ref().map(|p| p.0.clone()),
        hub_rss_max_kib: hub_process.map(|p| p.1),
        hub_cpu_percent,
        stream_errors,
        hub: hub_figures,
    })
}
