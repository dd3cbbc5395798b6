//! Joining the cluster: register with the leader (retrying until it answers), learn where the
//! segment store is, then heartbeat. If the leader forgets us (it restarted), register again.
//! Every heartbeat carries whether the node is draining ([`crate::drain`]), so a leader never
//! gives new work to a node that is leaving, even one that restarted meanwhile.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blueshift_proto::v1::cluster_client::ClusterClient;
use blueshift_proto::v1::{HeartbeatRequest, RegisterRequest};
use tokio::sync::Notify;

use crate::exec::Engine;
use crate::{Error, Result};

/// The node's stable name, created on first start and kept in its data dir.
pub fn node_name(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("node-name");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let name = format!("node-{}", uuid::Uuid::new_v4().simple());
            let tmp = data_dir.join("node-name.tmp");
            std::fs::write(&tmp, &name)?;
            std::fs::rename(&tmp, &path)?;
            Ok(name)
        }
    }
}

/// Who this node is to the leader, shared by the heartbeat loop and the drain.
pub struct NodeState {
    pub leader: String,
    pub name: String,
    pub flight_addr: String,
    draining: AtomicBool,
    /// The id the leader gave us; 0 until registered.
    node_id: AtomicU64,
    /// When the leader last answered a heartbeat that carried the current drain flag.
    last_answer: Mutex<Option<(Instant, bool)>>,
    /// Wakes the heartbeat loop so the leader hears of a drain at once.
    wake: Notify,
}

impl NodeState {
    pub fn new(leader: String, name: String, flight_addr: String) -> Self {
        Self {
            leader,
            name,
            flight_addr,
            draining: AtomicBool::new(false),
            node_id: AtomicU64::new(0),
            last_answer: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts draining: the next heartbeat (sent now) tells the leader.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn answered(&self, draining: bool) {
        let mut last = match self.last_answer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *last = Some((Instant::now(), draining));
    }

    /// When the leader last acknowledged that this node is draining.
    pub fn drain_acknowledged_at(&self) -> Option<Instant> {
        let last = match self.last_answer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match *last {
            Some((at, true)) => Some(at),
            _ => None,
        }
    }
}

pub async fn run(node: Arc<NodeState>, engine: Arc<Engine>) {
    loop {
        match register_and_heartbeat(&node, &engine).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(leader = %node.leader, error = %e, "leader unreachable; retrying")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn register_and_heartbeat(node: &NodeState, engine: &Engine) -> Result<()> {
    let mut client = ClusterClient::connect(node.leader.clone())
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    let draining = node.is_draining();
    let reply = client
        .register(RegisterRequest {
            node_name: node.name.clone(),
            flight_addr: node.flight_addr.clone(),
            draining,
        })
        .await
        .map_err(|e| Error::Transport(e.to_string()))?
        .into_inner();
    node.node_id.store(reply.node_id, Ordering::SeqCst);
    node.answered(draining);
    let leader_s3 =
        blueshift_common::store::S3Options::from_proto(reply.store_options.unwrap_or_default());
    engine.set_store(&reply.store_url, &leader_s3)?;
    tracing::info!(node_id = reply.node_id, store = %reply.store_url, "registered with leader");
    let interval = Duration::from_millis(u64::from(reply.heartbeat_interval_ms.max(100)));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = node.wake.notified() => {}
        }
        let draining = node.is_draining();
        let known = client
            .heartbeat(HeartbeatRequest {
                node_id: reply.node_id,
                flight_addr: node.flight_addr.clone(),
                node_name: node.name.clone(),
                draining,
            })
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .into_inner()
            .known;
        if !known {
            return Ok(());
        }
        node.answered(draining);
    }
}

/// Tells the leader now (one heartbeat on a new connection) whether this node is draining;
/// false if the leader does not know the node (it restarted: the heartbeat loop registers
/// again, saying it drains).
pub async fn heartbeat_now(node: &NodeState) -> Result<bool> {
    let node_id = node.node_id();
    if node_id == 0 {
        return Ok(false);
    }
    let draining = node.is_draining();
    let mut client = ClusterClient::connect(node.leader.clone())
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    let known = client
        .heartbeat(HeartbeatRequest {
            node_id,
            flight_addr: node.flight_addr.clone(),
            node_name: node.name.clone(),
            draining,
        })
        .await
        .map_err(|e| Error::Transport(e.to_string()))?
        .into_inner()
        .known;
    if known {
        node.answered(draining);
    }
    Ok(known)
}

/// The address other hosts reach this node at when none is configured: the listening IP if
/// it is a specific one, else the local address of the route to the leader (127.0.0.1 only
/// when the leader is on loopback). Nothing is sent: connecting a UDP socket only picks the
/// route.
pub async fn default_advertise_host(leader: &str, listen_ip: IpAddr) -> Result<String> {
    if !listen_ip.is_unspecified() {
        return Ok(listen_ip.to_string());
    }
    let uri: tonic::transport::Uri = leader
        .parse()
        .map_err(|e| Error::Config(format!("bad leader address {leader:?}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::Config(format!("leader address {leader:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(5440);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| Error::Config(format!("cannot resolve the leader host {host:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::Config(format!("the leader host {host:?} has no address")))?;
    let bind: std::net::SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(target).await.map_err(|e| {
        Error::Config(format!(
            "no route to the leader at {target} to find this node's address \
             (set advertise_host): {e}"
        ))
    })?;
    Ok(socket.local_addr()?.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_advertised_host_follows_the_route_to_the_leader() {
        let any: IpAddr = [0, 0, 0, 0].into();
        assert_eq!(
            default_advertise_host("http://127.0.0.1:5440", any)
                .await
                .unwrap(),
            "127.0.0.1"
        );
        let specific: IpAddr = [127, 0, 0, 7].into();
        assert_eq!(
            default_advertise_host("http://127.0.0.1:5440", specific)
                .await
                .unwrap(),
            "127.0.0.7"
        );
        assert!(default_advertise_host("not a uri", any).await.is_err());
    }
}
