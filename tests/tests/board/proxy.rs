//! A TCP relay between the browser and the hub that a test can cut: every open connection
//! is dropped and new ones are closed on accept until it is restored. The page sees a real
//! network failure (its EventSource errors and reconnects), while the hub keeps running and
//! publishing. It also notes the head of every stream request it relays, so a test can see
//! how the page asked to catch up (`Last-Event-ID`, `?after=`).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct CutProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    up: AtomicBool,
    // Bumped on every cut: each relay watches it and drops its sockets.
    cuts: watch::Sender<u64>,
    stream_requests: Mutex<Vec<String>>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(Shared {
            up: AtomicBool::new(true),
            cuts: watch::channel(0).0,
            stream_requests: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !s.up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, s.clone()));
            }
        });
        CutProxy { addr, shared, accept }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every relayed connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// The request heads of every `GET /api/v1/stream` relayed so far, in order.
    pub fn stream_requests(&self) -> Vec<String> {
        self.shared
            .stream_requests
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            note_stream_request(&buf[..n], &shared);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cuts.changed() => {}
    }
}

// A request head arrives at the start of a read on a fresh or kept-alive connection; the
// browser's requests are small, so one read holds the whole head.
fn note_stream_request(chunk: &[u8], shared: &Shared) {
    if !chunk.starts_with(b"GET /api/v1/stream") {
        return;
    }
    let text = String::from_utf8_lossy(chunk);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_string();
    if let Ok(mut v) = shared.stream_requests.lock() {
        v.push(head);
    }
}
