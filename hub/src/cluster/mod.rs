//! Several hubs on one PostgreSQL: ONE WRITER PER REGION DATABASE, held as a fenced lease.
//!
//! Every hub process on PostgreSQL competes for the `hub_leases` row `writer`. The holder is
//! ACTIVE: it runs the writer, accepts gateway streams, delivers notifications and runs the
//! timers, exactly as a single hub does. The others are STANDBYS serving operators in full:
//! reads from the database, every change forwarded to the active hub's HTTP API
//! (`forward.rs`; the lease row names its address), and the live stream relayed from the
//! active's commits (`relay.rs`: an outbox row per commit and LISTEN/NOTIFY). They refuse
//! gateway streams (UNAVAILABLE "standby hub; try another", naming the active), and poll the
//! lease every second; on taking it they start the writer as a fresh start does (it reloads
//! its state from the database).
//!
//! Fencing: every writer transaction begins with [`queries::fence`], an UPDATE of the lease
//! row that must match this hub's holder and epoch. It renews the lease, and holds the row
//! lock until COMMIT, so a takeover cannot interleave with a transaction; once the lease is
//! taken over the UPDATE matches nothing, the transaction rolls back and this hub becomes a
//! standby. A hub paused past its lease (SIGSTOP, a frozen VM) therefore can never commit
//! after waking up.
//!
//! SQLite runs without a lease: a file has one writer, so there is one hub.
//!
//! This module is a leaf: the writer, the link and the API read its [`Role`]; the
//! supervisor that starts and stops the writer is `supervisor.rs`.

pub mod forward;
pub mod queries;
pub mod relay;

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[cluster]`: how hubs sharing one PostgreSQL share its writer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How long the writer lease lasts without renewal (the active renews it with every
    /// transaction, at least once a second): the longest a dead active's work waits.
    pub lease_s: u32,
    /// The URL other hubs reach this hub's HTTP API at, to forward operators' changes while
    /// this hub is active (e.g. `http://hub-a:8080`). Unset: the environment variable
    /// `GATEHOUSE_HUB_ADVERTISE_HTTP`, else `http://<http_listen>` when that names an address,
    /// else `http://<host name>:<port>`.
    pub advertise_http: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            lease_s: 5,
            advertise_http: None,
        }
    }
}

/// The environment variable that names this hub's advertised HTTP URL (a pod's own IP in
/// Kubernetes, from the downward API) when `cluster.advertise_http` is not set.
pub const ADVERTISE_ENV: &str = "GATEHOUSE_HUB_ADVERTISE_HTTP";

impl ClusterConfig {
    /// `lease_s` in 2..=60: below 2 s a busy transaction could outlive its own lease.
    pub fn check(&self) -> Result<(), String> {
        if !(2..=60).contains(&self.lease_s) {
            return Err(format!("must be between 2 and 60 seconds, not {}", self.lease_s));
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_s))
    }

    /// The HTTP URL this hub advertises to the others (see [`ClusterConfig::advertise_http`]),
    /// given the bound HTTP address and the environment's value of [`ADVERTISE_ENV`].
    pub fn advertised_http(&self, bound: std::net::SocketAddr, env: Option<String>) -> Result<String, String> {
        let url = match self.advertise_http.clone().or(env.filter(|v| !v.trim().is_empty())) {
            Some(url) => url.trim().trim_end_matches('/').to_owned(),
            None if !bound.ip().is_unspecified() => format!("http://{bound}"),
            None => format!("http://{}:{}", host_name(), bound.port()),
        };
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/" => Ok(url),
            _ => Err(format!(
                "{url:?} is not an http(s)://host[:port] URL another hub can reach this one at"
            )),
        }
    }
}

/// This machine's host name (a container's name in Compose, a pod's in Kubernetes).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The hub that holds the writer lease, as a standby last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHub {
    pub holder: String,
    pub epoch: i64,
    /// Its HTTP API (`cluster.advertise_http`), where a standby forwards changes.
    pub http_url: String,
}

/// The lease a writer holds: every transaction is fenced with it.
#[derive(Debug, Clone)]
pub struct Fence {
    pub holder: String,
    pub epoch: i64,
    pub ttl_ms: i64,
}

const SINGLE: u8 = 0;
const ACTIVE: u8 = 1;
const STANDBY: u8 = 2;

/// What this hub is now: the only hub (SQLite), the active one, or a standby.
#[derive(Debug)]
pub struct Role {
    mode: AtomicU8,
    epoch: AtomicI64,
    holder: String,
    changed: Mutex<Instant>,
    /// On a standby: the active hub, while its lease is live (None: no hub holds it now).
    writer_at: Mutex<Option<ActiveHub>>,
}

impl Role {
    /// A single hub (SQLite): always active, no lease.
    pub fn single() -> Role {
        Role::new(SINGLE, String::new())
    }

    /// One of several hubs, a standby until it takes the lease as `holder`.
    pub fn standby(holder: String) -> Role {
        Role::new(STANDBY, holder)
    }

    fn new(mode: u8, holder: String) -> Role {
        Role {
            mode: AtomicU8::new(mode),
            epoch: AtomicI64::new(0),
            holder,
            changed: Mutex::new(Instant::now()),
            writer_at: Mutex::new(None),
        }
    }

    /// This hub's name in the lease row.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn is_standby(&self) -> bool {
        self.mode.load(Ordering::Acquire) == STANDBY
    }

    pub fn is_clustered(&self) -> bool {
        self.mode.load(Ordering::Acquire) != SINGLE
    }

    /// The lease epoch this hub writes under (0: none).
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn set_active(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::Release);
        self.mode.store(ACTIVE, Ordering::Release);
        *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub fn set_standby(&self) {
        if self.mode.load(Ordering::Acquire) != SINGLE {
            self.mode.store(STANDBY, Ordering::Release);
            *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }

    /// Where the writer is, as the standby's last look at the lease found it.
    pub fn set_writer_at(&self, active: Option<ActiveHub>) {
        *self.writer_at.lock().unwrap_or_else(|e| e.into_inner()) = active;
    }

    /// The active hub a standby forwards to (None: none holds the lease now, or this hub does).
    pub fn writer_at(&self) -> Option<ActiveHub> {
        if !self.is_standby() {
            return None;
        }
        self.writer_at.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `active`, `standby` or `single`.
    pub fn name(&self) -> &'static str {
        match self.mode.load(Ordering::Acquire) {
            ACTIVE => "active",
            STANDBY => "standby",
            _ => "single",
        }
    }

    /// How long this hub has been in its current role.
    pub fn for_how_long(&self) -> Duration {
        self.changed.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }

    /// `gatehouse_hub_role` (1 = this hub writes: active or single, 0 = standby) and
    /// `gatehouse_hub_writer_lease_epoch`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_role 1 when this hub runs the writer (active, or the only hub), 0 on a standby.\n\
             # TYPE gatehouse_hub_role gauge\ngatehouse_hub_role{{role=\"{}\"}} {}",
            self.name(),
            u8::from(!self.is_standby())
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_writer_lease_epoch The writer lease epoch this hub holds (0: none).\n\
             # TYPE gatehouse_hub_writer_lease_epoch gauge\ngatehouse_hub_writer_lease_epoch {}",
            if self.is_standby() { 0 } else { self.epoch() }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_bounds_are_checked() {
        assert!(ClusterConfig::default().check().is_ok());
        let lease = |lease_s| ClusterConfig {
            lease_s,
            ..ClusterConfig::default()
        };
        assert!(lease(1).check().is_err());
        assert!(lease(61).check().is_err());
    }

    #[test]
    fn the_advertised_address_is_configured_named_or_derived() {
        let bound: std::net::SocketAddr = "10.1.2.3:8080".parse().expect("address");
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("address");
        let set = |url: &str| ClusterConfig {
            advertise_http: Some(url.into()),
            ..ClusterConfig::default()
        };
        let plain = ClusterConfig::default();
        assert_eq!(
            plain.advertised_http(bound, None).as_deref(),
            Ok("http://10.1.2.3:8080")
        );
        assert_eq!(
            plain
                .advertised_http(any, Some("http://10.9.9.9:8080/".into()))
                .as_deref(),
            Ok("http://10.9.9.9:8080")
        );
        assert_eq!(
            set("http://hub-a:8080")
                .advertised_http(any, Some("http://x:1".into()))
                .as_deref(),
            Ok("http://hub-a:8080")
        );
        let derived = plain.advertised_http(any, None).expect("a host name");
        assert!(
            derived.starts_with("http://") && derived.ends_with(":8080"),
            "{derived}"
        );
        for bad in ["hub-a:8080", "ftp://hub-a", "http://hub-a:8080/api", "http://"] {
            assert!(set(bad).advertised_http(bound, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_render_and_change() {
        let role = Role::standby("hub-a/1".into());
        assert!(role.is_standby() && role.is_clustered());
        let mut out = String::new();
        role.render(&mut out);
        assert!(out.contains("gatehouse_hub_role{role=\"standby\"} 0"), "{out}");
        role.set_active(7);
        let mut out = String::new();
        role.render(&mut out);
        assert!(out.contains("gatehouse_hub_role{role=\"active\"} 1"), "{out}");
        assert!(out.contains("gatehouse_hub_writer_lease_epoch 7"), "{out}");
        let single = Role::single();
        single.set_standby();
        assert!(!single.is_standby());
    }
}
