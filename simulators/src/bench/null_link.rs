//! Phase 1 of the bench: a `GatewayLink` server that acknowledges every batch at once and
//! stores nothing, so the synthetic streams measure the transport alone.

use std::pin::Pin;

use gatehouse_proto::{self as pb, downlink, gateway_link_server::GatewayLink, uplink};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
struct NullLink;

type DownStream = Pin<Box<dyn futures::Stream<Item = Result<pb::Downlink, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayLink for NullLink {
    type ConnectStream = DownStream;

    async fn connect(&self, request: Request<Streaming<pb::Uplink>>) -> Result<Response<DownStream>, Status> {
        let mut up = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(m)) = up.message().await {
                let reply = match m.msg {
                    Some(uplink::Msg::Hello(_)) => downlink::Msg::Welcome(pb::Welcome {
                        last_seq: 0,
                        hub_id: "null".into(),
                        heartbeat_interval_ms: 5_000,
                        ..Default::default()
                    }),
                    Some(uplink::Msg::Events(b)) => downlink::Msg::Ack(pb::Ack {
                        through_seq: b.events.iter().map(|e| e.seq).max().unwrap_or(0),
                    }),
                    _ => continue,
                };
                if tx.send(Ok(pb::Downlink { msg: Some(reply) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves [`NullLink`] on a loopback port until the returned token is cancelled; returns
/// its URL.
pub(super) async fn null_server() -> anyhow::Result<(String, tokio_util::sync::CancellationToken)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .add_service(pb::gateway_link_server::GatewayLinkServer::new(NullLink))
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::spawn(server);
    Ok((format!("http://{addr}"), stop))
}
