//! Raft messages between leader replicas over gRPC: the `Raft` service (served on each
//! replica's cluster port beside `Cluster`) hands incoming messages to the driver, and one
//! sender task per peer ships the driver's outgoing messages in batches. Delivery is best
//! effort, as raft expects: a message that cannot be sent is dropped and the driver told
//! the peer is unreachable (raft sends again); a queue that grows past [`MAX_QUEUED`] while
//! a peer is down loses its oldest messages.

use std::collections::HashMap;
use std::time::Duration;

use blueshift_common::cluster_auth::{Attach, AuthChannel};
use blueshift_proto::MAX_MESSAGE_BYTES;
use blueshift_proto::v1::raft_client::RaftClient;
use blueshift_proto::v1::raft_server::Raft;
use blueshift_proto::v1::{
    DescribeRequest, GroupDescription, MembershipChange, MembershipReply, RaftAck, RaftMessages,
};
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{Replica, driver, membership};

const MAX_QUEUED: usize = 4096;
const MAX_BATCH: usize = 256;
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// The gRPC `Raft` service of one replica.
pub struct RaftService<O> {
    pub replica: Replica<O>,
}

fn to_status(e: crate::error::Error) -> Status {
    match e {
        crate::error::Error::Common(e) => e.to_status(),
        other => Status::internal(other.user_message()),
    }
}

#[tonic::async_trait]
impl<O: Send + 'static> Raft for RaftService<O> {
    async fn send(&self, request: Request<RaftMessages>) -> Result<Response<RaftAck>, Status> {
        let request = request.into_inner();
        if request.removed {
            self.replica.removed_by(request.from);
        }
        if !request.from_address.is_empty()
            && !self.replica.status().peers.contains_key(&request.from)
        {
            self.replica.learn_peer(request.from, request.from_address);
        }
        for bytes in request.messages {
            match Message::parse_from_bytes(&bytes) {
                Ok(m) => self.replica.deliver(m),
                Err(e) => return Err(Status::invalid_argument(format!("bad raft message: {e}"))),
            }
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<Response<GroupDescription>, Status> {
        Ok(Response::new(membership::describe(&self.replica.status())))
    }

    async fn change_membership(
        &self,
        request: Request<MembershipChange>,
    ) -> Result<Response<MembershipReply>, Status> {
        membership::change_on_leader(&self.replica, &request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}

/// Ships the driver's outgoing messages to the peers until the driver stops.
pub async fn run_senders<O: Send + 'static>(
    from: u64,
    replica: Replica<O>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
) {
    let mut peers: HashMap<u64, mpsc::Sender<Message>> = HashMap::new();
    while let Some(message) = outgoing.recv().await {
        let to = message.to;
        let queue = peers.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(MAX_QUEUED);
            tokio::spawn(send_to_peer(from, to, replica.clone(), rx));
            tx
        });
        // A full queue means the peer has been down a while: raft will resend what matters.
        let _ = queue.try_send(message);
    }
}

async fn send_to_peer<O: Send + 'static>(
    from: u64,
    to: u64,
    replica: Replica<O>,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut client: Option<(String, RaftClient<AuthChannel>)> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(addr) = replica.status().peers.get(&to).cloned() else {
            batch.clear();
            continue;
        };
        if client.as_ref().is_none_or(|(a, _)| *a != addr) {
            client = connect(&addr).map(|c| (addr.clone(), c));
        }
        let snapshots: Vec<bool> = batch.iter().map(driver::is_snapshot).collect();
        let mut encoded = Vec::with_capacity(batch.len());
        for m in batch.drain(..) {
            if let Ok(bytes) = m.write_to_bytes() {
                encoded.push(bytes);
            }
        }
        let sent = match client.as_mut() {
            Some((_, c)) => {
                let request = RaftMessages {
                    from,
                    messages: encoded,
                    from_address: replica
                        .status()
                        .peers
                        .get(&from)
                        .cloned()
                        .unwrap_or_default(),
                    removed: false,
                };
                matches!(
                    tokio::time::timeout(SEND_TIMEOUT, c.send(request)).await,
                    Ok(Ok(_))
                )
            }
            None => false,
        };
        if !sent {
            replica.report_unreachable(to);
        }
        for _ in snapshots.iter().filter(|s| **s) {
            replica.report_snapshot(to, sent);
        }
    }
}

/// Tells replica `to` at `addr` that its removal is committed (best effort, a few tries:
/// a replica that misses it keeps its stale view, which raft's log still corrects).
pub async fn tell_removed(from: u64, from_address: String, addr: &str) {
    let Some(mut client) = connect(addr) else {
        return;
    };
    for _ in 0..5 {
        let request = RaftMessages {
            from,
            messages: Vec::new(),
            from_address: from_address.clone(),
            removed: true,
        };
        if let Ok(Ok(_)) = tokio::time::timeout(SEND_TIMEOUT, client.send(request)).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A client of a replica's `Raft` service (connecting on first use).
pub(super) fn connect(addr: &str) -> Option<RaftClient<AuthChannel>> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url)
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    Some(
        RaftClient::with_interceptor(endpoint.connect_lazy(), Attach)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}
