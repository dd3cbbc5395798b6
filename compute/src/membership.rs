//! Joining the cluster: register with the leader (retrying until it answers), learn where the
//! segment store is, then heartbeat. If the leader forgets us (it restarted), register again.
//! With leader replicas the node does all of this with each of them on its own (one
//! [`NodeState`] per replica): any replica may schedule work on it.
//! Every heartbeat carries whether the node is draining ([`crate::drain`]), so a leader never
//! gives new work to a node that is leaving, even one that restarted meanwhile.
//! Every answer also lists the group's replicas: [`Leaders`] registers with a replica added
//! after the node started (one it was not told about with `--leader`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blueshift_common::cluster_auth::{Attach, AuthChannel};
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

/// The leader addresses of a `--leader` value: one, or the replicas' comma-separated.
pub fn leader_addresses(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// A leader address as a URL (`host:port` gets `http://`).
fn leader_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

struct LeaderEntry {
    node: Arc<NodeState>,
    task: tokio::task::JoinHandle<()>,
    /// Learned from a replica's answer rather than configured with `--leader`.
    learned: bool,
}

/// The leader replicas this node registers with: the configured ones, and those the
/// group's answers name that none of them is (a replica added later). Each has its own
/// [`NodeState`] and registration loop.
pub struct Leaders {
    name: String,
    flight_addr: String,
    engine: Arc<Engine>,
    entries: Mutex<Vec<LeaderEntry>>,
    /// Once the node drains it registers with no new replica.
    closed: AtomicBool,
}

impl Leaders {
    pub fn start(
        configured: Vec<String>,
        name: String,
        flight_addr: String,
        engine: Arc<Engine>,
    ) -> Arc<Leaders> {
        let leaders = Arc::new(Leaders {
            name,
            flight_addr,
            engine,
            entries: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        for addr in configured {
            leaders.add(leader_url(&addr), false);
        }
        leaders
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<LeaderEntry>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn add(self: &Arc<Self>, url: String, learned: bool) {
        let node = Arc::new(NodeState::new(
            url,
            self.name.clone(),
            self.flight_addr.clone(),
        ));
        let task = tokio::spawn(run(node.clone(), self.clone()));
        self.entries().push(LeaderEntry {
            node,
            task,
            learned,
        });
    }

    /// Registers with every replica of `replicas` (raft id to cluster address) that no
    /// entry is already (by id once registered, by address before).
    fn learn(self: &Arc<Self>, replicas: &HashMap<u64, String>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut new = Vec::new();
        {
            let entries = self.entries();
            for (id, addr) in replicas {
                let url = leader_url(addr);
                let known = entries
                    .iter()
                    .any(|e| e.node.replica_id() == *id || e.node.leader == url);
                if !known {
                    new.push((*id, url));
                }
            }
        }
        for (id, url) in new {
            tracing::info!(replica = id, leader = %url, "registering with a new leader replica");
            self.add(url, true);
        }
    }

    /// A learned entry that turned out to be a replica a configured entry is (they named
    /// it differently) stops.
    fn dedupe(&self) {
        let mut entries = self.entries();
        let configured: Vec<u64> = entries
            .iter()
            .filter(|e| !e.learned)
            .map(|e| e.node.replica_id())
            .filter(|id| *id != 0)
            .collect();
        entries.retain(|e| {
            let duplicate = e.learned && configured.contains(&e.node.replica_id());
            if duplicate {
                e.task.abort();
            }
            !duplicate
        });
    }

    /// Every replica's node state, for the drain; no replica is added after this.
    pub fn close(&self) -> Vec<(Arc<NodeState>, tokio::task::AbortHandle)> {
        self.closed.store(true, Ordering::SeqCst);
        self.entries()
            .iter()
            .map(|e| (e.node.clone(), e.task.abort_handle()))
            .collect()
    }

    /// Stops every registration loop.
    pub fn stop(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for e in self.entries().iter() {
            e.task.abort();
        }
    }
}

/// The leader's answer to one heartbeat (or registration).
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub at: Instant,
    pub draining: bool,
    pub statements: u32,
}

/// Who this node is to the leader, shared by the heartbeat loop and the drain.
pub struct NodeState {
    pub leader: String,
    pub name: String,
    pub flight_addr: String,
    draining: AtomicBool,
    /// The id the leader gave us; 0 until registered.
    node_id: AtomicU64,
    /// The raft id of the leader replica; 0 until registered.
    replica_id: AtomicU64,
    /// The leader's last answer to a heartbeat: when, whether that heartbeat said the node
    /// drains, and how many statements still held a slice map naming the node.
    last_answer: Mutex<Option<Answer>>,
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
            replica_id: AtomicU64::new(0),
            last_answer: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::SeqCst)
    }

    pub fn replica_id(&self) -> u64 {
        self.replica_id.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts draining: the next heartbeat (sent now) tells the leader.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn answered(&self, draining: bool, statements: u32) {
        let mut last = match self.last_answer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // An answer to a heartbeat sent before the drain began says nothing about it.
        if self.is_draining() && !draining {
            return;
        }
        *last = Some(Answer {
            at: Instant::now(),
            draining,
            statements,
        });
    }

    /// The leader's last answer to a heartbeat that told it this node drains.
    pub fn drain_answer(&self) -> Option<Answer> {
        let last = match self.last_answer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        last.filter(|a| a.draining)
    }
}

async fn run(node: Arc<NodeState>, leaders: Arc<Leaders>) {
    loop {
        match register_and_heartbeat(&node, &leaders).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(leader = %node.leader, error = %e, "leader unreachable; retrying")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn register_and_heartbeat(node: &NodeState, leaders: &Arc<Leaders>) -> Result<()> {
    let engine = &leaders.engine;
    let mut client = connect(&node.leader).await?;
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
    node.replica_id.store(reply.replica_id, Ordering::SeqCst);
    leaders.dedupe();
    leaders.learn(&reply.leader_replicas);
    // A new registration: statements of the leader's previous life are gone, and new ones
    // leave a draining node out; the count comes with the next heartbeat.
    node.answered(draining, u32::MAX);
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
        match heartbeat_now(node, &mut client).await? {
            Some(replicas) => leaders.learn(&replicas),
            None => return Ok(()),
        }
    }
}

/// One heartbeat on `client`: tells the leader that this node is alive and whether it is
/// draining, and records the answer: the group's replicas, or `None` if the leader does
/// not know the node (it restarted: the heartbeat loop registers again, saying whether it
/// drains).
pub async fn heartbeat_now(
    node: &NodeState,
    client: &mut ClusterClient<AuthChannel>,
) -> Result<Option<HashMap<u64, String>>> {
    let node_id = node.node_id();
    if node_id == 0 {
        return Ok(None);
    }
    let draining = node.is_draining();
    let answer = client
        .heartbeat(HeartbeatRequest {
            node_id,
            flight_addr: node.flight_addr.clone(),
            node_name: node.name.clone(),
            draining,
        })
        .await
        .map_err(|e| Error::Transport(e.to_string()))?
        .into_inner();
    if !answer.known {
        return Ok(None);
    }
    node.answered(draining, answer.statements);
    Ok(Some(answer.leader_replicas))
}

/// A client of the leader's cluster service on a new connection.
pub async fn connect(leader: &str) -> Result<ClusterClient<AuthChannel>> {
    let channel = tonic::transport::Endpoint::from_shared(leader.to_string())
        .map_err(|e| Error::Config(format!("bad leader address {leader:?}: {e}")))?
        .connect()
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    Ok(ClusterClient::with_interceptor(channel, Attach))
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
    let targets: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| Error::Config(format!("cannot resolve the leader host {host:?}: {e}")))?
        // A node listening on 0.0.0.0 is reachable over IPv4 only.
        .filter(|a| listen_ip.is_ipv6() || a.is_ipv4())
        .collect();
    let mut last_error = format!("the leader host {host:?} has no usable address");
    for target in targets {
        let bind: std::net::SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        match socket.connect(target).await {
            Ok(()) => return Ok(socket.local_addr()?.ip().to_string()),
            Err(e) => last_error = format!("no route to the leader at {target}: {e}"),
        }
    }
    Err(Error::Config(last_error))
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
        // `localhost` may resolve to ::1 first; a node on 0.0.0.0 must still get IPv4.
        assert_eq!(
            default_advertise_host("http://localhost:5440", any)
                .await
                .unwrap(),
            "127.0.0.1"
        );
    }
}
