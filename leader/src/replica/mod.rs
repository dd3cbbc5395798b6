//! Leader replicas: a raft group (raft-rs) that replicates a state machine's command log,
//! here the catalog's. Every replica runs a [`driver`] thread that owns the raft node and
//! its [`storage`], applies committed commands to the state machine in log order, and
//! exchanges raft messages with the other replicas over the gRPC [`transport`] (raft-rs's
//! protobuf 2 messages travel as opaque bytes, so they never meet our prost types).
//!
//! [`Replica`] is the handle the rest of the leader uses: [`Replica::propose`] returns once
//! the command is committed by a majority and applied here (on a follower raft forwards
//! the proposal to the raft leader), [`Replica::read_barrier`] once this replica has applied
//! everything committed before the call (raft's read index), which makes a statement that
//! pins its catalog afterwards see every commit any replica acknowledged. This module knows
//! nothing of catalog commands: they are bytes, applied by a [`StateMachine`].

pub mod driver;
pub mod membership;
pub mod storage;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blueshift_common::error::sqlstate;
use tokio::sync::{oneshot, watch};

use crate::error::{Error, Result};

/// The commands a replica group agrees on, applied in log order on every replica.
/// Applying must depend only on the state and the command.
pub trait StateMachine: Send + 'static {
    /// What a proposer hears back once its command is applied.
    type Output: Send + 'static;
    fn apply(&mut self, command: &[u8]) -> Self::Output;
    /// The whole state, for a raft snapshot.
    fn snapshot(&self) -> Result<Vec<u8>>;
    fn restore(&mut self, data: &[u8]) -> Result<()>;
    /// A command the raft leader proposes while the state is still empty (a new group).
    fn bootstrap(&self) -> Option<Vec<u8>>;
}

/// Which replica this is and who the others are.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: u64,
    /// Raft (gRPC) address of every replica of a new group, this one included (with
    /// `join`, this one alone).
    pub peers: BTreeMap<u64, String>,
    /// Raft addresses of replicas of an existing group this one (with an empty data dir)
    /// asks to be added to.
    pub join: Vec<String>,
}

impl ReplicaConfig {
    /// A group of one: this process alone (the default).
    pub fn single() -> Self {
        ReplicaConfig {
            node_id: 1,
            peers: BTreeMap::from([(1, String::new())]),
            join: Vec::new(),
        }
    }

    /// Parses `--peers 1=host:port,2=host:port,...`.
    pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>> {
        let mut peers = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part.split_once('=').ok_or_else(|| {
                Error::Config(format!("peer \"{part}\" is not of the form id=host:port"))
            })?;
            let id: u64 =
                id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                    Error::Config(format!("peer id \"{id}\" is not a number > 0"))
                })?;
            if peers.insert(id, addr.trim().to_string()).is_some() {
                return Err(Error::Config(format!("peer {id} is listed twice")));
            }
        }
        Ok(peers)
    }
}

/// Raft role and progress of one replica, as `stv_leader_replicas` and `/ready` show it.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    pub node_id: u64,
    /// `leader`, `follower`, `learner` (added, catching up), `candidate`, `pre-candidate`,
    /// `undecided` (an empty replica finding out whether its group is new), `joining`
    /// (waiting to be added) or `removed`.
    pub role: &'static str,
    /// False while undecided.
    pub initialized: bool,
    pub term: u64,
    /// The raft leader this replica knows of (0: none).
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// Voters of the group.
    pub voters: Vec<u64>,
    /// Learners: added replicas still catching up, not voting yet.
    pub learners: Vec<u64>,
    /// On the raft leader: the last log index each replica is known to hold.
    pub matched: BTreeMap<u64, u64>,
    /// Raft addresses of the replicas, by id.
    pub peers: BTreeMap<u64, String>,
}

/// How long a proposal or read barrier waits before it gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// A read index request not answered within this long is sent again.
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);
/// The pause between read index attempts while no raft leader is known.
const TICK_WAIT: Duration = Duration::from_millis(100);

fn behind() -> Error {
    unavailable(format!(
        "this replica could not confirm it is up to date with the raft leader within {} s \
         (it may be cut off from a majority of the leader replicas)",
        REQUEST_TIMEOUT.as_secs()
    ))
}

/// The handle to a running replica; cheap to clone.
pub struct Replica<O> {
    requests: std::sync::mpsc::Sender<driver::Request<O>>,
    applied: watch::Receiver<u64>,
    status: Arc<Mutex<ReplicaStatus>>,
}

impl<O> Clone for Replica<O> {
    fn clone(&self) -> Self {
        Replica {
            requests: self.requests.clone(),
            applied: self.applied.clone(),
            status: self.status.clone(),
        }
    }
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::sql(sqlstate::CANNOT_CONNECT_NOW, message)
}

impl<O: Send + 'static> Replica<O> {
    /// Proposes a command; its output once it is committed and applied here.
    pub async fn propose(&self, command: Vec<u8>) -> Result<O> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(driver::Request::Propose { command, reply: tx })
            .map_err(|_| unavailable("the catalog replica is shutting down"))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(unavailable("the catalog replica is shutting down")),
            Err(_) => Err(Error::sql(
                sqlstate::STATEMENT_COMPLETION_UNKNOWN,
                format!(
                    "the catalog change was not confirmed within {} s (the raft leader may \
                     have changed): it may or may not have been committed",
                    REQUEST_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// Waits until this replica has applied every command committed before the call.
    pub async fn read_barrier(&self) -> Result<()> {
        if self.is_sole_voter() {
            // Every command of a group of one is proposed and applied in this process.
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let (tx, rx) = oneshot::channel();
            self.requests
                .send(driver::Request::ReadIndex { reply: tx })
                .map_err(|_| unavailable("the catalog replica is shutting down"))?;
            // Raft drops a read index request sent during an election or to a leader that
            // just lost its place: ask again rather than wait out the whole timeout.
            let attempt = tokio::time::Instant::now() + READ_INDEX_RETRY;
            match tokio::time::timeout_at(attempt.min(deadline), rx).await {
                Ok(Ok(Ok(index))) => {
                    return match tokio::time::timeout_at(deadline, self.wait_applied(index)).await {
                        Ok(result) => result,
                        Err(_) => Err(behind()),
                    };
                }
                Ok(Ok(Err(e))) if tokio::time::Instant::now() + TICK_WAIT >= deadline => {
                    return Err(e);
                }
                // No leader known yet: wait a little for the election.
                Ok(Ok(Err(_))) => tokio::time::sleep(TICK_WAIT).await,
                Ok(Err(_)) => return Err(unavailable("the catalog replica is shutting down")),
                Err(_) if tokio::time::Instant::now() >= deadline => return Err(behind()),
                Err(_) => {}
            }
        }
    }

    /// Waits until the replica has applied up to `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<()> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|a| *a >= index)
            .await
            .map(|_| ())
            .map_err(|_| unavailable("the catalog replica is shutting down"))
    }

    pub fn status(&self) -> ReplicaStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn is_sole_voter(&self) -> bool {
        let s = self.status();
        s.voters == [s.node_id]
    }

    /// Hands a raft message from a peer to the driver.
    pub fn deliver(&self, message: raft::prelude::Message) {
        let _ = self.requests.send(driver::Request::Raft(Box::new(message)));
    }

    /// Tells raft a peer could not be reached (the transport's report).
    pub fn report_unreachable(&self, peer: u64) {
        let _ = self.requests.send(driver::Request::Unreachable(peer));
    }

    /// Tells raft whether a snapshot sent to a peer arrived.
    pub fn report_snapshot(&self, peer: u64, arrived: bool) {
        let _ = self
            .requests
            .send(driver::Request::SnapshotSent(peer, arrived));
    }

    /// Tells the driver where a peer is reached (as the peer itself said).
    pub fn learn_peer(&self, peer: u64, address: String) {
        let _ = self
            .requests
            .send(driver::Request::LearnPeer(peer, address));
    }

    /// An undecided replica: the group is new, with these voters.
    pub fn initialize(&self, voters: Vec<u64>) {
        let _ = self.requests.send(driver::Request::Initialize { voters });
    }

    /// An undecided replica: the group exists; wait to be added to it.
    pub fn start_joining(&self) {
        let _ = self.requests.send(driver::Request::Join);
    }

    /// The raft leader `by` committed this replica's removal.
    pub fn removed_by(&self, by: u64) {
        let _ = self.requests.send(driver::Request::Removed(by));
    }

    /// A joining replica was added by the raft leader: it may vote.
    pub fn joined(&self) {
        let _ = self.requests.send(driver::Request::Joined);
    }

    /// On the raft leader: proposes a membership change and waits until it is applied here.
    pub async fn propose_membership(&self, change: raft::prelude::ConfChange) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(driver::Request::ChangeMembership { change, reply: tx })
            .map_err(|_| unavailable("the catalog replica is shutting down"))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(unavailable("the catalog replica is shutting down")),
            Err(_) => Err(Error::sql(
                sqlstate::STATEMENT_COMPLETION_UNKNOWN,
                "the change of the leader replicas was not confirmed in time: it may or may \
                 not have been committed",
            )),
        }
    }

    /// On the raft leader: hands leadership to `to`.
    pub fn transfer_leader(&self, to: u64) {
        let _ = self.requests.send(driver::Request::TransferLeader(to));
    }

    /// Stops the driver thread (it finishes the work at hand first).
    pub fn stop(&self) {
        let _ = self.requests.send(driver::Request::Stop);
    }
}
