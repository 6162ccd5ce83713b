//! `dc09.tcp` tells the truth (issue 9): when the DC-09 listener cannot accept connections
//! (here: the process is out of descriptors, as 1,024 idle connections did), `/healthz`
//! fails with the check named, and it passes again once accepting works.
//!
//! Alone in its test binary: it lowers this process's descriptor limit. The idle
//! connections are held by an independent client in its own process (Python's `socket`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_gateway::config::Config;

const HOLDER: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()
held = []
for i in range(64):
    s = socket.socket()
    s.bind(("127.0.3.%d" % (i % 60 + 1), 0))
    s.connect((host, port))
    held.append(s)
print("held", flush=True)
sys.stdin.readline()
"#;

fn set_soft_nofile(soft: u64) {
    let mut lim = libc_rlimit();
    lim.0 = soft;
    let c = libc::rlimit {
        rlim_cur: lim.0,
        rlim_max: lim.1,
    };
    // SAFETY: setrlimit reads one rlimit struct from a valid pointer to a local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &c) }, 0, "setrlimit");
}

fn libc_rlimit() -> (u64, u64) {
    let mut c = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct through a valid pointer to a local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut c) }, 0, "getrlimit");
    (c.rlim_cur, c.rlim_max)
}

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as u64
}

async fn until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dc09_tcp_health_fails_while_accepting_fails_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::from_toml(&format!(
        r#"
[gateway]
id = "gw-dc09"
estate = "estate-a"
data_dir = "{}"
hubs = ["http://127.0.0.1:1"]

[uplink]
plaintext = true

[dc09]
listen = "127.0.0.1:0"
idle_timeout_s = 60
max_connections = 200
max_connections_per_source = 4
"#,
        dir.path().display()
    ))
    .expect("test configuration");
    let gw = gatehouse_gateway::start(config).await.expect("gateway starts");
    let addr = gw.dc09_addr.expect("DC-09 listening");
    assert!(gw.health.live());

    let mut holder = Command::new("python3")
        .args(["-c", HOLDER, &addr.ip().to_string(), &addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut to_holder = holder.stdin.take().expect("stdin");
    let mut from_holder = BufReader::new(holder.stdout.take().expect("stdout"));

    // Room for a few connections only, then the holder connects 64 times.
    let (soft, hard) = libc_rlimit();
    set_soft_nofile(open_descriptors() + 4);
    writeln!(to_holder).expect("start the holder");
    let mut line = String::new();
    from_holder.read_line(&mut line).expect("holder answers");
    assert_eq!(line.trim(), "held");

    until(Duration::from_secs(10), "dc09.tcp fails", || !gw.health.live()).await;
    let failures = gw.health.failures();
    assert_eq!(failures[0].check, "dc09.tcp", "{failures:?}");
    assert!(failures[0].reason.contains("accepting"), "{failures:?}");
    let mut text = gw.metrics.render();
    gw.health.render(&mut text);
    assert!(
        text.contains("gatehouse_gateway_health_ok{check=\"dc09.tcp\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_gateway_health_ok{check=\"dc09.udp\"} 1"),
        "{text}"
    );
    println!("{failures:?}");

    // Descriptors come back: the next accept passes the check again.
    set_soft_nofile(soft.max(1024).min(hard));
    writeln!(to_holder).expect("release the holder");
    let _ = holder.wait();
    until(Duration::from_secs(10), "dc09.tcp passes again", || gw.health.live()).await;
    gw.shutdown().await;
}
