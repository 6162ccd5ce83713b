//! Synthetic gateways: `GatewayLink.Connect` streams that say Hello with their devices and
//! send generated access events (and, when asked, forced doors) at a fixed rate, at most
//! `GRPC_WINDOW` batches unacknowledged, timing each batch to the hub's Ack (which covers
//! only what is committed). `load --via grpc` and `bench` load the hub with them.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use gatehouse_proto::{self as pb, event::Body};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::{
    STARTUP_TIMEOUT,
    alarms::AlarmClock,
    latency::{LATENCY_MAX_MS, Latency},
    tally::Tally,
};

/// What one synthetic gateway stream did.
pub(crate) struct StreamTally {
    pub(crate) devices: Vec<Tally>,
    /// Events acknowledged by the hub (its Ack covers them: committed).
    pub(crate) acked: u64,
    /// Sent (and acknowledged) batches.
    pub(crate) batches: u64,
    pub(crate) ack_us: Histogram<u64>,
    pub(crate) error: Option<String>,
}

/// What one synthetic gateway stream sends, and when.
pub(crate) struct StreamPlan {
    pub(crate) index: usize,
    pub(crate) gateway: String,
    pub(crate) estate: String,
    pub(crate) devices: Vec<String>,
    /// Events per second of this stream.
    pub(crate) rate: f64,
    pub(crate) batch_every: Duration,
    pub(crate) alarm_every: u64,
    pub(crate) began: Instant,
    pub(crate) end: Instant,
    pub(crate) drain: Duration,
}

/// Most batches of one stream sent and not yet acknowledged (the hub reads 16 ahead).
const GRPC_WINDOW: usize = 16;

/// Largest batch a synthetic gateway sends (a real one: `uplink.batch_max`, 500).
const MAX_BATCH_EVENTS: u64 = 500;

/// Runs one stream to its end (everything acknowledged) or its failure, kept in the tally.
pub(crate) async fn run_stream(
    plan: StreamPlan,
    url: String,
    sent: Arc<AtomicU64>,
    acked_total: Arc<AtomicU64>,
    alarms: AlarmClock,
) -> StreamTally {
    let mut tally = StreamTally {
        devices: plan.devices.iter().map(|d| Tally::new(d.clone())).collect(),
        acked: 0,
        batches: 0,
        ack_us: Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).expect("histogram bounds"),
        error: None,
    };
    if let Err(e) = stream_events(&plan, &url, &sent, &acked_total, &alarms, &mut tally).await {
        tally.error = Some(format!("{}: {e:#}", plan.gateway));
    }
    tally
}

async fn stream_events(
    plan: &StreamPlan,
    url: &str,
    sent: &AtomicU64,
    acked_total: &AtomicU64,
    alarms: &AlarmClock,
    tally: &mut StreamTally,
) -> anyhow::Result<()> {
    use gatehouse_proto::{downlink, gateway_link_client::GatewayLinkClient, uplink};
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut client = GatewayLinkClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::Uplink>(GRPC_WINDOW * 2);
    let hello = pb::Hello {
        gateway_id: plan.gateway.clone(),
        estate_id: plan.estate.clone(),
        software_version: "gatehouse-sim-load".into(),
        devices: plan
            .devices
            .iter()
            .enumerate()
            .map(|(k, d)| pb::DeviceInfo {
                device_id: d.clone(),
                kind: if k % 2 == 0 {
                    pb::DeviceKind::Intercom
                } else {
                    pb::DeviceKind::Door
                } as i32,
                area: "load".into(),
            })
            .collect(),
        ..Default::default()
    };
    tx.send(pb::Uplink {
        msg: Some(uplink::Msg::Hello(hello)),
    })
    .await
    .ok();
    let mut downlink = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("GatewayLink.Connect")?
        .into_inner();
    let welcome = match tokio::time::timeout(STARTUP_TIMEOUT, downlink.message()).await {
        Ok(Ok(Some(pb::Downlink {
            msg: Some(downlink::Msg::Welcome(w)),
        }))) => w,
        other => bail!("no Welcome: {other:?}"),
    };
    let mut seq = welcome.last_seq;
    // (last seq of the batch, its size, sent at)
    let mut unacked: VecDeque<(u64, u64, Instant)> = Default::default();
    let mut made = 0u64;
    let mut ticker = tokio::time::interval_at(
        (plan.began + plan.batch_every.mul_f64((plan.index % 97) as f64 / 97.0)).into(),
        plan.batch_every,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending = true;
    let mut drain_until = None;
    loop {
        if !sending && unacked.is_empty() {
            return Ok(());
        }
        if let Some(until) = drain_until
            && Instant::now() >= until
        {
            bail!(
                "{} batches unacknowledged, no Ack for {:?} after the end",
                unacked.len(),
                plan.drain
            );
        }
        tokio::select! {
            msg = downlink.message() => match msg {
                Ok(Some(pb::Downlink { msg: Some(downlink::Msg::Ack(a)) })) => {
                    let now = Instant::now();
                    while let Some(&(last, n, at)) = unacked.front() {
                        if last > a.through_seq {
                            break;
                        }
                        unacked.pop_front();
                        // Draining: the hub is still making progress; give it the stall time again.
                        if drain_until.is_some() {
                            drain_until = Some(now + plan.drain);
                        }
                        let _ = tally.ack_us.record_n(now.duration_since(at).as_micros() as u64, n);
                        tally.acked += n;
                        tally.batches += 1;
                        acked_total.fetch_add(n, Relaxed);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("the hub closed the stream"),
                Err(status) => bail!("stream failed: {status}"),
            },
            _ = ticker.tick(), if sending => {
                let now = Instant::now();
                if now >= plan.end {
                    sending = false;
                    drain_until = Some(now + plan.drain);
                    continue;
                }
                let due_total = (now.duration_since(plan.began).as_secs_f64() * plan.rate) as u64;
                if unacked.len() >= GRPC_WINDOW || due_total <= made {
                    continue;
                }
                let n = (due_total - made).min(MAX_BATCH_EVENTS);
                let now_ms = pb::now_ms();
                let mut events = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    made += 1;
                    seq += 1;
                    let d = (made as usize) % tally.devices.len();
                    let t = &mut tally.devices[d];
                    // Streams are offset, so one event in `alarm_every` overall is an
                    // alarm even when each stream sends fewer than that.
                    let alarm = plan.alarm_every > 0
                        && (made + plan.index as u64 * 7919).is_multiple_of(plan.alarm_every);
                    let body = if alarm {
                        let door = format!("load-{}-{made}", plan.index);
                        alarms.sent(door.clone());
                        Body::Door(pb::DoorEvent {
                            r#type: pb::DoorEventType::Forced as i32,
                            door,
                            seconds: 0,
                        })
                    } else {
                        let tag = format!("{}/{}", t.device, t.next);
                        t.next += 1;
                        Body::Access(pb::AccessEvent {
                            door: "load-door".into(),
                            result: pb::AccessResult::Granted as i32,
                            credential: tag,
                            reason: String::new(),
                        })
                    };
                    events.push(pb::Event {
                        event_id: format!("{}-{seq}", plan.gateway),
                        seq,
                        gateway_id: plan.gateway.clone(),
                        estate_id: plan.estate.clone(),
                        device_id: t.device.clone(),
                        device_kind: pb::DeviceKind::Door as i32,
                        area: "load".into(),
                        occurred_at_ms: now_ms,
                        received_at_ms: now_ms,
                        trace_context: Default::default(),
                        body: Some(body),
                    });
                }
                let tagged = events.iter().filter(|e| matches!(e.body, Some(Body::Access(_)))).count() as u64;
                unacked.push_back((seq, n, Instant::now()));
                tx.send(pb::Uplink { msg: Some(uplink::Msg::Events(pb::EventBatch { events })) })
                    .await
                    .map_err(|_| anyhow!("the stream's send side closed"))?;
                sent.fetch_add(tagged, Relaxed);
            }
        }
    }
}

/// What [`blast`] measured.
pub(crate) struct BlastResult {
    /// Events acknowledged between the start and the end of the sending window.
    pub acked_in_window: u64,
    pub acked_total: u64,
    pub sent: u64,
    pub window_s: f64,
    pub ack: Latency,
    pub errors: Vec<String>,
}

/// `streams` synthetic gateways (`gw-load-<i>` of estates `load-<i>`) offering `rate`
/// events/s in total to `url` for `duration`, no alarms; counts what the hub acknowledged.
pub(crate) async fn blast(
    url: &str,
    streams: usize,
    rate: f64,
    duration: Duration,
    batch_every: Duration,
) -> anyhow::Result<BlastResult> {
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let began = Instant::now() + Duration::from_millis(500 + 3 * streams as u64);
    let end = began + duration;
    let mut tasks = JoinSet::new();
    for i in 0..streams {
        let gateway = format!("gw-load-{i}");
        let plan = StreamPlan {
            index: i,
            devices: (0..4).map(|k| format!("{gateway}-dev-{k}")).collect(),
            gateway,
            estate: format!("load-{i}"),
            rate: rate / streams as f64,
            batch_every,
            alarm_every: 0,
            began,
            end,
            drain: Duration::from_secs(20),
        };
        tasks.spawn(run_stream(
            plan,
            url.to_string(),
            sent.clone(),
            acked.clone(),
            AlarmClock::default(),
        ));
    }
    tokio::time::sleep_until(began.into()).await;
    let at_start = acked.load(Relaxed);
    tokio::time::sleep_until(end.into()).await;
    let at_end = acked.load(Relaxed);
    let mut ack = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).context("histogram")?;
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let t = joined.context("a stream task failed")?;
        ack.add(&t.ack_us).context("merging ack histograms")?;
        errors.extend(t.error);
    }
    Ok(BlastResult {
        acked_in_window: at_end - at_start,
        acked_total: acked.load(Relaxed),
        sent: sent.load(Relaxed),
        window_s: duration.as_secs_f64(),
        ack: Latency::from_micros(&ack),
        errors,
    })
}
