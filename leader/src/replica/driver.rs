//! The thread that drives one replica's raft node: ticks its clock, steps messages from
//! peers, proposes commands, persists what raft hands over (fsynced: the thread does blocking
//! disk I/O, so it is a thread of its own, not a tokio task), sends messages out, applies
//! committed entries to the state machine in log order and answers the proposers and read
//! barriers waiting on them. It takes a raft snapshot of the state machine (compacting the
//! log) every `snapshot_every` applied entries.
//!
//! A proposal's entry carries the proposing process's incarnation (random per start) and a
//! sequence number before the command, so the replica that proposed it, and only that one
//! process, answers its waiter when the entry is applied.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blueshift_common::error::sqlstate;
use protobuf::Message as _;
use raft::StateRole;
use raft::prelude::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, RawNode,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::storage::DiskStorage;
use super::{REQUEST_TIMEOUT, Replica, ReplicaConfig, ReplicaStatus, StateMachine};
use crate::error::{Error, Result};

/// One raft clock tick.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks without a leader's heartbeat before a follower campaigns (randomised up to twice).
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;

pub enum Request<O> {
    Propose {
        command: Vec<u8>,
        reply: oneshot::Sender<Result<O>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<u64>>,
    },
    Raft(Box<Message>),
    /// The transport could not reach a peer.
    Unreachable(u64),
    /// A snapshot sent to a peer arrived (`true`) or did not.
    SnapshotSent(u64, bool),
    Stop,
}

/// A started replica: its handle, the messages it wants sent, and the commit index it must
/// apply up to before it has caught up with what it held on disk.
pub struct Started<O> {
    pub replica: Replica<O>,
    pub outgoing: mpsc::UnboundedReceiver<Message>,
    pub commit_at_open: u64,
    /// The last log index held at open: a sole voter commits all of it once it leads.
    pub last_at_open: u64,
    pub thread: std::thread::JoinHandle<()>,
}

struct Logger;

impl slog::Drain for Logger {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> std::result::Result<(), slog::Never> {
        let message = record.msg().to_string();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{message}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}"),
            slog::Level::Info => tracing::info!(target: "raft", "{message}"),
            _ => tracing::debug!(target: "raft", "{message}"),
        }
        Ok(())
    }
}

fn raft_error(e: raft::Error) -> Error {
    Error::CatalogIo(format!("raft: {e}"))
}

fn no_leader() -> Error {
    Error::sql(
        sqlstate::CANNOT_CONNECT_NOW,
        "this leader replica knows no raft leader (an election is under way, or it is cut off \
         from a majority of the replicas): catalog changes cannot be committed now; retry",
    )
}

/// Opens the replica's storage under `dir`, restores `machine` from its snapshot and starts
/// the driver thread.
pub fn start<M: StateMachine>(
    dir: &Path,
    config: &ReplicaConfig,
    mut machine: M,
    snapshot_every: u64,
) -> Result<Started<M::Output>> {
    let mut storage = DiskStorage::open(dir)?;
    let fresh = storage.conf_state().voters.is_empty()
        && storage.conf_state().learners.is_empty()
        && storage.last_index_raw() == 0;
    if fresh && !config.peers.is_empty() {
        let conf = ConfState {
            voters: config.peers.keys().copied().collect(),
            ..Default::default()
        };
        storage.persist(&[], None, Some(&conf))?;
    }
    let snapshot = storage.latest_snapshot();
    let applied = snapshot.get_metadata().index;
    if !snapshot.data.is_empty() {
        machine.restore(&snapshot.data)?;
    }
    let commit_at_open = storage.hard_state().commit;
    let last_at_open = storage.last_index_raw();
    let voters = storage.conf_state().voters.clone();
    let raft_config = raft::Config {
        id: config.node_id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        applied,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        read_only_option: raft::ReadOnlyOption::Safe,
        ..Default::default()
    };
    raft_config.validate().map_err(raft_error)?;
    let logger = slog::Logger::root(slog::Fuse(Logger), slog::o!());
    let mut node = RawNode::new(&raft_config, storage, &logger).map_err(raft_error)?;
    if voters == [config.node_id] {
        // A group of one needs no election timeout to find out it is the leader.
        node.campaign().map_err(raft_error)?;
    }
    let (requests, inbox) = std::sync::mpsc::channel();
    let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
    let (applied_tx, applied_rx) = watch::channel(applied);
    let status = Arc::new(Mutex::new(ReplicaStatus {
        node_id: config.node_id,
        role: "follower",
        voters,
        peers: config.peers.clone(),
        applied_index: applied,
        ..Default::default()
    }));
    let driver = Driver {
        node,
        machine,
        incarnation: rand::random::<u64>() | 1,
        next_seq: 1,
        pending: HashMap::new(),
        next_read: 1,
        reads: HashMap::new(),
        outgoing: outgoing_tx,
        applied,
        applied_tx,
        status: status.clone(),
        snapshot_every: snapshot_every.max(1),
        bootstrap_term: 0,
        known_leader: (0, 0),
    };
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.node_id))
        .spawn(move || driver.run(inbox))
        .map_err(|e| Error::CatalogIo(format!("starting the raft thread: {e}")))?;
    Ok(Started {
        replica: Replica {
            requests,
            applied: applied_rx,
            status,
        },
        outgoing,
        commit_at_open,
        last_at_open,
        thread,
    })
}

/// A proposal's entry data: who proposed it, its sequence number, the command.
fn frame(incarnation: u64, seq: u64, command: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(command.len() + 16);
    data.extend_from_slice(&incarnation.to_le_bytes());
    data.extend_from_slice(&seq.to_le_bytes());
    data.extend_from_slice(command);
    data
}

type Pending<O> = HashMap<u64, (Instant, oneshot::Sender<Result<O>>)>;

struct Driver<M: StateMachine> {
    node: RawNode<DiskStorage>,
    machine: M,
    incarnation: u64,
    next_seq: u64,
    pending: Pending<M::Output>,
    next_read: u64,
    reads: HashMap<u64, (Instant, oneshot::Sender<Result<u64>>)>,
    outgoing: mpsc::UnboundedSender<Message>,
    applied: u64,
    applied_tx: watch::Sender<u64>,
    status: Arc<Mutex<ReplicaStatus>>,
    snapshot_every: u64,
    /// The term in which this replica (as raft leader) proposed the bootstrap command.
    bootstrap_term: u64,
    /// The raft leader last seen, and its term.
    known_leader: (u64, u64),
}

impl<M: StateMachine> Driver<M> {
    fn run(mut self, inbox: Receiver<Request<M::Output>>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(request) => {
                    self.handle(request);
                    // Take whatever else is queued before the (fsyncing) ready round.
                    while let Ok(more) = inbox.try_recv() {
                        if matches!(more, Request::Stop) {
                            return;
                        }
                        self.handle(more);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick += TICK;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + TICK;
                }
                self.expire();
            }
            if let Err(e) = self.on_ready() {
                // A replica that cannot persist must not go on voting or acknowledging.
                tracing::error!(error = %e.user_message(), "raft replica stops");
                return;
            }
            self.maybe_bootstrap();
            self.on_leader_change();
            self.publish_status();
        }
    }

    fn handle(&mut self, request: Request<M::Output>) {
        match request {
            Request::Propose { command, reply } => {
                let seq = self.next_seq;
                self.next_seq += 1;
                match self
                    .node
                    .propose(Vec::new(), frame(self.incarnation, seq, &command))
                {
                    Ok(()) => {
                        self.pending.insert(seq, (Instant::now(), reply));
                    }
                    Err(raft::Error::ProposalDropped) => {
                        let _ = reply.send(Err(no_leader()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(raft_error(e)));
                    }
                }
            }
            Request::ReadIndex { reply } => {
                if self.node.raft.leader_id == raft::INVALID_ID {
                    let _ = reply.send(Err(no_leader()));
                    return;
                }
                let ctx = self.next_read;
                self.next_read += 1;
                self.node.read_index(ctx.to_le_bytes().to_vec());
                self.reads.insert(ctx, (Instant::now(), reply));
            }
            Request::Raft(message) => {
                if let Err(e) = self.node.step(*message) {
                    tracing::debug!(error = %e, "raft message ignored");
                }
            }
            Request::Unreachable(peer) => self.node.report_unreachable(peer),
            Request::SnapshotSent(peer, ok) => self.node.report_snapshot(
                peer,
                if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                },
            ),
            Request::Stop => {}
        }
    }

    /// Forgets waiters that gave up (their side timed out).
    fn expire(&mut self) {
        let old = |t: &Instant| t.elapsed() > REQUEST_TIMEOUT * 2;
        self.pending.retain(|_, (t, _)| !old(t));
        self.reads.retain(|_, (t, _)| !old(t));
    }

    fn send(&self, messages: Vec<Message>) {
        for m in messages {
            let _ = self.outgoing.send(m);
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let index = snapshot.get_metadata().index;
            self.machine.restore(&snapshot.data)?;
            self.node.mut_store().apply_snapshot(snapshot)?;
            self.applied = index;
            tracing::info!(index, "installed a raft snapshot from the leader");
        }
        self.apply(ready.take_committed_entries())?;
        self.node
            .mut_store()
            .persist(ready.entries(), ready.hs(), None)?;
        self.send(ready.take_persisted_messages());
        for state in ready.take_read_states() {
            let ctx = state
                .request_ctx
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            if let Some((_, reply)) = ctx.and_then(|c| self.reads.remove(&c)) {
                let _ = reply.send(Ok(state.index));
            }
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not fsynced on its own: a commit index is recovered from the leader.
            self.node.mut_store().note_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        self.maybe_snapshot()?;
        let _ = self.applied_tx.send_replace(self.applied);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.len() >= 16 => {
                    let data = &entry.data[..];
                    let incarnation = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
                    let seq = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
                    let output = self.machine.apply(&data[16..]);
                    if incarnation == self.incarnation
                        && let Some((_, reply)) = self.pending.remove(&seq)
                    {
                        let _ = reply.send(Ok(output));
                    }
                }
                // The empty entry a new leader appends.
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => {
                    let change: ConfChange = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| Error::CatalogIo(format!("corrupt conf change: {e}")))?;
                    let conf = self.node.apply_conf_change(&change).map_err(raft_error)?;
                    self.node.mut_store().persist(&[], None, Some(&conf))?;
                }
                EntryType::EntryConfChangeV2 => {
                    let change: ConfChangeV2 = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| Error::CatalogIo(format!("corrupt conf change: {e}")))?;
                    let conf = self.node.apply_conf_change(&change).map_err(raft_error)?;
                    self.node.mut_store().persist(&[], None, Some(&conf))?;
                }
            }
            self.applied = entry.index;
        }
        Ok(())
    }

    fn maybe_snapshot(&mut self) -> Result<()> {
        let store = self.node.store();
        let held = store.latest_snapshot().get_metadata().index;
        let upto = self.applied.min(store.last_index_raw());
        if upto >= held + self.snapshot_every {
            let data = self.machine.snapshot()?;
            self.node.mut_store().compact(upto, data)?;
        }
        Ok(())
    }

    /// A proposal in flight when the raft leader changes may have been lost with the old
    /// leader, or committed by it: its proposer hears so at once (40003) instead of waiting
    /// out the timeout, and may retry against the new leader.
    fn on_leader_change(&mut self) {
        let now = (self.node.raft.leader_id, self.node.raft.term);
        if now == self.known_leader {
            return;
        }
        let (old_leader, _) = std::mem::replace(&mut self.known_leader, now);
        if old_leader == raft::INVALID_ID || now.0 == old_leader {
            return;
        }
        for (_, (_, reply)) in self.pending.drain() {
            let _ = reply.send(Err(Error::sql(
                sqlstate::STATEMENT_COMPLETION_UNKNOWN,
                "the raft leader changed while this catalog change was in flight: it may or \
                 may not have been committed",
            )));
        }
    }

    fn maybe_bootstrap(&mut self) {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader
            || self.bootstrap_term == raft.term
            || raft.raft_log.applied < raft.raft_log.committed
        {
            return;
        }
        if let Some(command) = self.machine.bootstrap() {
            self.bootstrap_term = raft.term;
            // Incarnation 0: nobody waits for it.
            if let Err(e) = self.node.propose(Vec::new(), frame(0, 0, &command)) {
                tracing::warn!(error = %e, "cannot propose the catalog bootstrap");
            }
        }
    }

    fn publish_status(&self) {
        let raft = &self.node.raft;
        let mut status = match self.status.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        status.role = match raft.state {
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        status.term = raft.term;
        status.leader_id = raft.leader_id;
        status.commit_index = raft.raft_log.committed;
        status.applied_index = self.applied;
        status.voters = self.node.store().conf_state().voters.clone();
    }
}

/// Whether a message carries a snapshot (the transport reports how sending it went).
pub fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgSnapshot
}
