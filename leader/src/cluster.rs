//! Cluster membership: compute nodes register and heartbeat over gRPC; the leader keeps who
//! is alive and assigns slices to live nodes. Membership is runtime state, not catalog state:
//! segments live in the shared store, so a slice can move to any live node.
//!
//! Slice assignment: live nodes sorted by id; slice `i` of `S` goes to node
//! `i * live / S`, so each node owns a contiguous run of slices (node 0: slices 0..k, ...).
//!
//! Resize: a node that registers serves slices in every slice map made after that (each
//! statement takes one when it starts). A node that drains (SIGTERM) says so in its
//! heartbeat; from then on it is left out of new slice maps. Every slice map holds a
//! [`Lease`] on the nodes it names until the statement that took it ends (the map lives in
//! its task context); the heartbeat reply tells a node how many statements still hold one,
//! and a draining node calls `Leave` when that is 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blueshift_common::error::sqlstate;
use blueshift_proto::v1::cluster_server::Cluster;
use blueshift_proto::v1::{
    HeartbeatRequest, HeartbeatResponse, LeaveRequest, LeaveResponse, RegisterRequest,
    RegisterResponse, StoreOptions,
};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A node that has not been heard from for this long is down.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: u64,
    pub name: String,
    pub flight_addr: String,
    pub last_seen: Instant,
    /// The node is leaving: no new work goes to it.
    pub draining: bool,
}

impl NodeInfo {
    pub fn is_up(&self) -> bool {
        self.last_seen.elapsed() < NODE_TIMEOUT
    }

    /// `up`, `draining` or `down`, as system views show it.
    pub fn state(&self) -> &'static str {
        match (self.is_up(), self.draining) {
            (false, _) => "down",
            (true, true) => "draining",
            (true, false) => "up",
        }
    }
}

/// Which node serves each slice, for one query or load.
#[derive(Debug, Clone)]
pub struct SliceMap {
    /// `(node id, flight address)` per slice.
    pub owners: Vec<(u64, String)>,
    /// Counts this map (and its clones) as a user of its nodes while it lives.
    _lease: Arc<Lease>,
}

/// Statements holding a slice map, per node id.
type LeaseCounts = Arc<Mutex<HashMap<u64, u32>>>;

/// One statement's hold on the nodes of its slice map; see the module docs.
#[derive(Debug)]
pub struct Lease {
    counts: LeaseCounts,
    nodes: Vec<u64>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        for n in &self.nodes {
            if let Some(c) = counts.get_mut(n) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    counts.remove(n);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SliceMap {
    pub fn addr(&self, slice: usize) -> Option<&str> {
        self.owners.get(slice).map(|(_, a)| a.as_str())
    }

    /// The first slice of every node (where `DISTSTYLE ALL` copies live).
    pub fn first_slices(&self) -> Vec<u32> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (i, (node, _)) in self.owners.iter().enumerate() {
            if !seen.contains(node) {
                seen.push(*node);
                out.push(i as u32);
            }
        }
        out
    }
}

pub struct Membership {
    nodes: Mutex<Vec<NodeInfo>>,
    leases: LeaseCounts,
    store_url: String,
    /// The store's non-secret S3 settings, told to every node that registers.
    store_options: StoreOptions,
}

impl Membership {
    pub fn new(store_url: String, s3: &blueshift_common::store::S3Options) -> Self {
        Self {
            nodes: Mutex::new(Vec::new()),
            leases: Arc::default(),
            store_url,
            store_options: s3.to_proto(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NodeInfo>> {
        lock(&self.nodes)
    }

    /// Statements running now whose slice map names node `id`.
    pub fn statements_using(&self, id: u64) -> u32 {
        lock(&self.leases).get(&id).copied().unwrap_or(0)
    }

    pub fn register(&self, name: &str, flight_addr: &str, draining: bool) -> u64 {
        let mut nodes = self.lock();
        if let Some(n) = nodes.iter_mut().find(|n| n.name == name) {
            n.flight_addr = flight_addr.to_string();
            n.last_seen = Instant::now();
            n.draining = draining;
            return n.id;
        }
        let id = nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        nodes.push(NodeInfo {
            id,
            name: name.to_string(),
            flight_addr: flight_addr.to_string(),
            last_seen: Instant::now(),
            draining,
        });
        tracing::info!(node_id = id, %name, %flight_addr, "compute node joined");
        id
    }

    /// Records that node `id` called `name` is alive, and draining if it says so (a drain
    /// ends only with a new registration); false if no such node is known (ids are handed
    /// out again after a leader restart, so the name must match too).
    pub fn heartbeat(&self, id: u64, name: &str, draining: bool) -> bool {
        let mut nodes = self.lock();
        match nodes.iter_mut().find(|n| n.id == id && n.name == name) {
            Some(n) => {
                n.last_seen = Instant::now();
                if draining && !n.draining {
                    tracing::info!(node_id = id, name = %n.name, "compute node draining");
                    n.draining = true;
                }
                true
            }
            None => false,
        }
    }

    /// Forgets a node that drained and left.
    pub fn leave(&self, id: u64, name: &str) {
        let mut nodes = self.lock();
        if let Some(pos) = nodes.iter().position(|n| n.id == id && n.name == name) {
            let n = nodes.remove(pos);
            tracing::info!(node_id = id, name = %n.name, "compute node left the cluster");
        }
    }

    /// Marks a node down at once (e.g. after a failed call), until its next heartbeat.
    pub fn suspect(&self, flight_addr: &str) {
        let mut nodes = self.lock();
        for n in nodes.iter_mut().filter(|n| n.flight_addr == flight_addr) {
            if let Some(t) = Instant::now().checked_sub(NODE_TIMEOUT) {
                n.last_seen = t;
            }
            tracing::warn!(node_id = n.id, addr = %n.flight_addr, "compute node unreachable");
        }
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.lock().clone()
    }

    /// The nodes that take new work: up and not draining, by id.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        let mut live: Vec<NodeInfo> = self
            .lock()
            .iter()
            .filter(|n| n.is_up() && !n.draining)
            .cloned()
            .collect();
        live.sort_by_key(|n| n.id);
        live
    }

    /// Assigns `slices` slices to the live nodes, or fails if there are none.
    pub fn slice_map(&self, slices: u32) -> Result<SliceMap> {
        let live = self.live_nodes();
        if live.is_empty() {
            return Err(Error::sql(
                sqlstate::CANNOT_CONNECT_NOW,
                "no compute node is available: start one with `blueshift compute --leader ...`",
            ));
        }
        let s = slices.max(1) as usize;
        let owners: Vec<(u64, String)> = (0..s)
            .map(|i| {
                let n = &live[i * live.len() / s];
                (n.id, n.flight_addr.clone())
            })
            .collect();
        let mut nodes: Vec<u64> = owners.iter().map(|(id, _)| *id).collect();
        nodes.dedup();
        {
            let mut counts = lock(&self.leases);
            for n in &nodes {
                *counts.entry(*n).or_default() += 1;
            }
        }
        let lease = Arc::new(Lease {
            counts: self.leases.clone(),
            nodes,
        });
        Ok(SliceMap {
            owners,
            _lease: lease,
        })
    }

    pub fn store_url(&self) -> &str {
        &self.store_url
    }
}

/// The gRPC face of [`Membership`].
pub struct ClusterService {
    pub membership: Arc<Membership>,
    /// The leader replicas' raft group, whose members compute nodes register with.
    pub catalog: Arc<crate::catalog::Catalog>,
}

impl ClusterService {
    /// This replica's id and every member replica's cluster address.
    fn replicas(&self) -> (u64, std::collections::HashMap<u64, String>) {
        let status = self.catalog.replica_status();
        let replicas = status
            .voters
            .iter()
            .chain(&status.learners)
            .filter_map(|id| {
                let addr = status.peers.get(id).filter(|a| !a.is_empty())?;
                Some((*id, addr.clone()))
            })
            .collect();
        (status.node_id, replicas)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let req = request.into_inner();
        if req.node_name.is_empty() || req.flight_addr.is_empty() {
            return Err(Status::invalid_argument(
                "node_name and flight_addr are required",
            ));
        }
        let node_id = self
            .membership
            .register(&req.node_name, &req.flight_addr, req.draining);
        let (replica_id, leader_replicas) = self.replicas();
        Ok(Response::new(RegisterResponse {
            node_id,
            store_url: self.membership.store_url().to_string(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
            store_options: Some(self.membership.store_options.clone()),
            replica_id,
            leader_replicas,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let known = self
            .membership
            .heartbeat(req.node_id, &req.node_name, req.draining);
        Ok(Response::new(HeartbeatResponse {
            known,
            statements: self.membership.statements_using(req.node_id),
            leader_replicas: self.replicas().1,
        }))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        let req = request.into_inner();
        self.membership.leave(req.node_id, &req.node_name);
        Ok(Response::new(LeaveResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_spread_in_contiguous_runs() {
        let m = Membership::new("file:///tmp".into(), &Default::default());
        m.register("a", "h:1", false);
        m.register("b", "h:2", false);
        let map = m.slice_map(4).unwrap();
        let nodes: Vec<u64> = map.owners.iter().map(|(n, _)| *n).collect();
        assert_eq!(nodes, vec![1, 1, 2, 2]);
        assert_eq!(map.first_slices(), vec![0, 2]);
    }

    #[test]
    fn reregistering_keeps_the_node_id() {
        let m = Membership::new("file:///tmp".into(), &Default::default());
        let a = m.register("a", "h:1", false);
        assert_eq!(m.register("a", "h:9", false), a);
        assert_eq!(m.nodes()[0].flight_addr, "h:9");
    }

    #[test]
    fn a_draining_node_gets_no_slices_and_leaves() {
        let m = Membership::new("file:///tmp".into(), &Default::default());
        let a = m.register("a", "h:1", false);
        let b = m.register("b", "h:2", false);
        let before = m.slice_map(4).unwrap();
        assert_eq!(m.statements_using(b), 1, "a statement holds a map naming b");
        assert!(m.heartbeat(b, "b", true));
        assert!(!m.heartbeat(b, "other", true), "ids are matched with names");
        assert!(
            m.heartbeat(b, "b", false),
            "a stale heartbeat does not end a drain"
        );
        let map = m.slice_map(4).unwrap();
        assert!(map.owners.iter().all(|(n, _)| *n == a));
        assert_eq!(m.nodes()[1].state(), "draining");
        assert_eq!(m.statements_using(b), 1);
        let copy = before.clone();
        drop(before);
        assert_eq!(m.statements_using(b), 1, "a clone keeps the lease");
        drop(copy);
        assert_eq!(m.statements_using(b), 0);
        assert_eq!(m.statements_using(a), 1);
        drop(map);
        assert_eq!(m.statements_using(a), 0);
        m.leave(b, "b");
        assert_eq!(m.nodes().len(), 1);
        assert!(!m.heartbeat(b, "b", true), "a node that left is unknown");
        // A node joining later takes over its share.
        let c = m.register("c", "h:3", false);
        let nodes: Vec<u64> = m
            .slice_map(4)
            .unwrap()
            .owners
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(nodes, vec![a, a, c, c]);
    }
}
