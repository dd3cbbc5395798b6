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
//!
//! Membership: a conf change entry carries the added replica's raft address as its context,
//! and a snapshot carries every replica's address beside the state machine's data, so each
//! replica (one that joined late or installed a snapshot included) knows where its peers
//! are. A replica with an empty data dir that is given several peers starts *undecided*: it
//! takes no part in raft until [`Request::Initialize`] (the group is new) or
//! [`Request::Join`] (it exists: the raft leader will add this replica) says how to begin.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blueshift_common::error::sqlstate;
use protobuf::Message as _;
use raft::StateRole;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType,
    RawNode,
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
    /// A peer said where it is reached (kept if its address was not known).
    LearnPeer(u64, String),
    /// Undecided: the group is new, with these voters.
    Initialize {
        voters: Vec<u64>,
    },
    /// Undecided: the group exists; start with no members and wait to be added.
    Join,
    /// On the raft leader: propose a membership change; answered once it is applied here.
    ChangeMembership {
        change: ConfChange,
        reply: oneshot::Sender<Result<()>>,
    },
    /// On the raft leader: hand leadership to this voter.
    TransferLeader(u64),
    /// The raft leader added this joining replica: it may vote from now on.
    Joined,
    /// The raft leader (this id) committed this replica's removal.
    Removed(u64),
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
    /// The storage held nothing (a new replica, or one whose disk was wiped).
    pub fresh: bool,
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

/// Snapshot data: this magic, the replicas' addresses (length-prefixed JSON), then the
/// state machine's snapshot. Data without the magic is a state machine snapshot alone
/// (written before membership changes, or by the in-place upgrade).
const SNAPSHOT_MAGIC: &[u8; 8] = b"BSRAFT1\n";

fn wrap_snapshot(peers: &BTreeMap<u64, String>, machine: &[u8]) -> Result<Vec<u8>> {
    let peers = serde_json::to_vec(peers)
        .map_err(|e| Error::CatalogIo(format!("encoding replica addresses: {e}")))?;
    let mut data = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 4 + peers.len() + machine.len());
    data.extend_from_slice(SNAPSHOT_MAGIC);
    data.extend_from_slice(&(peers.len() as u32).to_le_bytes());
    data.extend_from_slice(&peers);
    data.extend_from_slice(machine);
    Ok(data)
}

/// The replicas' addresses (if the snapshot holds them) and the state machine's data.
/// Replica addresses by raft id.
type Peers = BTreeMap<u64, String>;

fn unwrap_snapshot(data: &[u8]) -> Result<(Option<Peers>, &[u8])> {
    let Some(rest) = data.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
        return Ok((None, data));
    };
    let corrupt = || Error::CatalogIo("corrupt raft snapshot: bad replica address block".into());
    let len = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(corrupt)? as usize;
    let block = rest.get(4..4 + len).ok_or_else(corrupt)?;
    let peers = serde_json::from_slice(block).map_err(|_| corrupt())?;
    Ok((Some(peers), &rest[4 + len..]))
}

fn removed() -> Error {
    Error::sql(
        sqlstate::CANNOT_CONNECT_NOW,
        "this leader replica was removed from the group of leader replicas: connect to \
         another replica",
    )
}

fn not_leader() -> Error {
    Error::sql(
        sqlstate::CANNOT_CONNECT_NOW,
        "this leader replica is not the raft leader (leadership moved): retry",
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
    // A fresh replica of a group of one is that group; one told to join starts with no
    // members; one given several peers must first find out whether the group is new.
    let undecided = fresh && config.join.is_empty() && config.peers.len() > 1;
    if fresh && config.join.is_empty() && config.peers.len() == 1 {
        let conf = ConfState {
            voters: config.peers.keys().copied().collect(),
            ..Default::default()
        };
        storage.persist(&[], None, Some(&conf))?;
    }
    let snapshot = storage.latest_snapshot();
    let applied = snapshot.get_metadata().index;
    let mut peers = config.peers.clone();
    if !snapshot.data.is_empty() {
        let (held, data) = unwrap_snapshot(&snapshot.data)?;
        machine.restore(data)?;
        if let Some(held) = held {
            peers = merge_peers(held, config);
        }
    }
    let commit_at_open = storage.hard_state().commit;
    let last_at_open = storage.last_index_raw();
    let (requests, inbox) = std::sync::mpsc::channel();
    let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
    let (applied_tx, applied_rx) = watch::channel(applied);
    let status = Arc::new(Mutex::new(ReplicaStatus {
        node_id: config.node_id,
        role: if undecided { "undecided" } else { "follower" },
        initialized: !undecided,
        voters: storage.conf_state().voters.clone(),
        learners: storage.conf_state().learners.clone(),
        peers: peers.clone(),
        applied_index: applied,
        last_index: last_at_open,
        ..Default::default()
    }));
    let node_id = config.node_id;
    let setup = Setup {
        node_id,
        storage,
        machine,
        peers,
        applied,
        outgoing: outgoing_tx,
        applied_tx,
        status: status.clone(),
        snapshot_every: snapshot_every.max(1),
        abstain: fresh && !config.join.is_empty(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("raft-{node_id}"))
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(move || -> Result<()> {
                let setup = if undecided {
                    match setup.decide(&inbox)? {
                        Some(s) => s,
                        None => return Ok(()),
                    }
                } else {
                    setup
                };
                setup.into_driver()?.run(inbox)
            });
            // A replica whose driver is gone can neither commit nor read: rather than serve
            // "shutting down" errors forever, the process exits and its supervisor
            // (`blueshift local`, Kubernetes) restarts it.
            match std::panic::catch_unwind(run) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e.user_message(), "the raft replica stopped: exiting");
                    std::process::exit(70);
                }
                Err(_) => {
                    tracing::error!("the raft replica panicked: exiting");
                    std::process::exit(70);
                }
            }
        })
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
        fresh,
        thread,
    })
}

/// The addresses a snapshot holds, with this replica's own configured address (which it
/// knows better than the group: it may have moved).
fn merge_peers(mut held: BTreeMap<u64, String>, config: &ReplicaConfig) -> BTreeMap<u64, String> {
    if let Some(own) = config.peers.get(&config.node_id).filter(|a| !a.is_empty()) {
        held.insert(config.node_id, own.clone());
    }
    for (id, addr) in &config.peers {
        held.entry(*id).or_insert_with(|| addr.clone());
    }
    held
}

/// What a driver is built from once the replica knows how it takes part in its group.
struct Setup<M: StateMachine> {
    node_id: u64,
    storage: DiskStorage,
    machine: M,
    peers: BTreeMap<u64, String>,
    applied: u64,
    outgoing: mpsc::UnboundedSender<Message>,
    applied_tx: watch::Sender<u64>,
    status: Arc<Mutex<ReplicaStatus>>,
    snapshot_every: u64,
    /// Joining with an empty log: no votes until the raft leader has added this replica.
    abstain: bool,
}

impl<M: StateMachine> Setup<M> {
    /// An undecided replica waits to hear whether its group is new; it drops raft messages
    /// meanwhile (their senders retry) and refuses work. `None`: it was stopped.
    fn decide(mut self, inbox: &Receiver<Request<M::Output>>) -> Result<Option<Self>> {
        loop {
            let Ok(request) = inbox.recv() else {
                return Ok(None);
            };
            match request {
                Request::Stop => return Ok(None),
                Request::Initialize { voters } => {
                    let conf = ConfState {
                        voters,
                        ..Default::default()
                    };
                    self.storage.persist(&[], None, Some(&conf))?;
                    tracing::info!(voters = ?conf.voters, "starting a new group of leader replicas");
                    return Ok(Some(self));
                }
                Request::Join => {
                    tracing::info!("joining the existing group of leader replicas");
                    self.abstain = true;
                    return Ok(Some(self));
                }
                Request::LearnPeer(id, addr) => {
                    self.peers.entry(id).or_insert(addr);
                }
                Request::Propose { reply, .. } => {
                    let _ = reply.send(Err(no_leader()));
                }
                Request::ReadIndex { reply } => {
                    let _ = reply.send(Err(no_leader()));
                }
                Request::ChangeMembership { reply, .. } => {
                    let _ = reply.send(Err(no_leader()));
                }
                Request::Raft(_)
                | Request::Unreachable(_)
                | Request::SnapshotSent(..)
                | Request::TransferLeader(_)
                | Request::Joined
                | Request::Removed(_) => {}
            }
        }
    }

    fn into_driver(self) -> Result<Driver<M>> {
        let voters = self.storage.conf_state().voters.clone();
        let raft_config = raft::Config {
            id: self.node_id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: self.applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            read_only_option: raft::ReadOnlyOption::Safe,
            ..Default::default()
        };
        raft_config.validate().map_err(raft_error)?;
        let logger = slog::Logger::root(slog::Fuse(Logger), slog::o!());
        let removed = self.storage.is_marked_removed();
        let mut node = RawNode::new(&raft_config, self.storage, &logger).map_err(raft_error)?;
        if voters == [self.node_id] {
            // A group of one needs no election timeout to find out it is the leader.
            node.campaign().map_err(raft_error)?;
        }
        Ok(Driver {
            node,
            machine: self.machine,
            incarnation: rand::random::<u64>() | 1,
            next_seq: 1,
            pending: HashMap::new(),
            next_read: 1,
            reads: HashMap::new(),
            membership: None,
            abstain: self.abstain,
            removed,
            peers: self.peers,
            outgoing: self.outgoing,
            applied: self.applied,
            applied_tx: self.applied_tx,
            status: self.status,
            snapshot_every: self.snapshot_every,
            bootstrap_term: 0,
            known_leader: (0, 0),
        })
    }
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
    /// The membership change proposed here: its log index and its waiter.
    membership: Option<(u64, Instant, oneshot::Sender<Result<()>>)>,
    /// A joining replica whose disk was empty forgot the votes it may have cast before: it
    /// answers no vote request until the raft leader has removed and added it again (or
    /// added it for the first time).
    abstain: bool,
    /// The raft leader told this replica it was removed (see [`Request::Removed`]).
    removed: bool,
    /// Raft addresses of the replicas, by id.
    peers: BTreeMap<u64, String>,
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
    /// Runs until stopped (`Ok`) or until it cannot persist (`Err`).
    fn run(mut self, inbox: Receiver<Request<M::Output>>) -> Result<()> {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(request) => {
                    self.handle(request);
                    // Take whatever else is queued before the (fsyncing) ready round.
                    while let Ok(more) = inbox.try_recv() {
                        if matches!(more, Request::Stop) {
                            return Ok(());
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
            // A replica that cannot persist must not go on voting or acknowledging.
            self.on_ready()?;
            self.maybe_bootstrap();
            self.on_leader_change();
            self.publish_status();
        }
    }

    fn handle(&mut self, request: Request<M::Output>) {
        match request {
            Request::Propose { reply, .. } if self.is_removed() => {
                let _ = reply.send(Err(removed()));
            }
            Request::ReadIndex { reply } if self.is_removed() => {
                let _ = reply.send(Err(removed()));
            }
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
            Request::Raft(message)
                if self.abstain
                    && matches!(
                        message.get_msg_type(),
                        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                    ) => {}
            Request::Raft(mut message) => {
                if self.abstain && message.get_msg_type() == MessageType::MsgHeartbeat {
                    // Until the raft leader has removed and re-added this replica, it may
                    // still believe the wiped disk's entries are here and send their commit
                    // index; raft-rs panics on a commit past the last index. What is here
                    // came from the current leader, so committing up to it is safe.
                    let last = self.node.raft.raft_log.last_index();
                    message.commit = message.commit.min(last);
                }
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
            Request::LearnPeer(id, addr) => {
                if let std::collections::btree_map::Entry::Vacant(e) = self.peers.entry(id) {
                    tracing::info!(replica = id, address = %addr, "learned a replica's address");
                    e.insert(addr);
                }
            }
            Request::ChangeMembership { change, reply } => {
                let raft = &self.node.raft;
                if raft.state != StateRole::Leader {
                    let _ = reply.send(Err(not_leader()));
                } else if self.membership.is_some() || raft.has_pending_conf() {
                    let _ = reply.send(Err(Error::sql(
                        sqlstate::OBJECT_IN_USE,
                        "another change of the leader replicas is in progress; retry when it \
                         is done",
                    )));
                } else {
                    match self.node.propose_conf_change(Vec::new(), change) {
                        Ok(()) => {
                            let index = self.node.raft.raft_log.last_index();
                            self.membership = Some((index, Instant::now(), reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(raft_error(e)));
                        }
                    }
                }
            }
            Request::TransferLeader(to) => self.node.transfer_leader(to),
            Request::Joined => self.abstain = false,
            // Only from the leader this replica follows: a stale one might not know of a
            // later re-adding.
            Request::Removed(by) if by == self.node.raft.leader_id && !self.removed => {
                tracing::warn!(
                    by,
                    "this replica was removed from the group of leader replicas"
                );
                if let Err(e) = self.node.mut_store().mark_removed() {
                    tracing::error!(error = %e.user_message(), "cannot record the removal");
                }
                self.removed = true;
            }
            Request::Removed(_) => {}
            // Only an undecided replica (see `Setup::decide`) takes these.
            Request::Initialize { .. } | Request::Join | Request::Stop => {}
        }
    }

    /// Whether this replica was removed from its group (it knows of a group, but not in it).
    fn is_removed(&self) -> bool {
        if self.removed {
            return true;
        }
        let conf = self.node.store().conf_state();
        let id = self.node.raft.id;
        !conf.voters.is_empty() && !conf.voters.contains(&id) && !conf.learners.contains(&id)
    }

    /// Forgets waiters that gave up (their side timed out).
    fn expire(&mut self) {
        let old = |t: &Instant| t.elapsed() > REQUEST_TIMEOUT * 2;
        self.pending.retain(|_, (t, _)| !old(t));
        self.reads.retain(|_, (t, _)| !old(t));
        if self.membership.as_ref().is_some_and(|(_, t, _)| old(t)) {
            self.membership = None;
        }
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
            let (peers, data) = unwrap_snapshot(&snapshot.data)?;
            self.machine.restore(data)?;
            if let Some(peers) = peers {
                // The group's addresses; this replica keeps its own.
                let own = self.peers.get(&self.node.raft.id).cloned();
                self.peers = peers;
                if let Some(own) = own {
                    self.peers.insert(self.node.raft.id, own);
                }
            }
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
            if self
                .membership
                .as_ref()
                .is_some_and(|(i, _, _)| *i == entry.index)
                && let Some((_, _, reply)) = self.membership.take()
            {
                // Raft turns a conf change it cannot take now into an empty entry.
                let _ = reply.send(match entry.get_entry_type() {
                    EntryType::EntryNormal => Err(Error::sql(
                        sqlstate::OBJECT_IN_USE,
                        "the change of the leader replicas was refused by raft (another one \
                         was in progress); retry",
                    )),
                    _ => Ok(()),
                });
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
                    self.note_addresses(&change);
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

    /// Keeps the address an added replica's conf change carries; forgets a removed one's.
    fn note_addresses(&mut self, change: &ConfChange) {
        let id = change.node_id;
        match change.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if let Ok(addr) = std::str::from_utf8(&change.context)
                    && !addr.is_empty()
                    && id != self.node.raft.id
                {
                    self.peers.insert(id, addr.to_string());
                }
                tracing::info!(replica = id, kind = ?change.get_change_type(), "leader replica added");
            }
            ConfChangeType::RemoveNode => {
                if id != self.node.raft.id {
                    self.peers.remove(&id);
                }
                tracing::info!(replica = id, "leader replica removed");
            }
        }
    }

    fn maybe_snapshot(&mut self) -> Result<()> {
        let store = self.node.store();
        let held = store.latest_snapshot().get_metadata().index;
        let upto = self.applied.min(store.last_index_raw());
        let wanted = store.take_snapshot_wanted();
        if upto >= held + self.snapshot_every || (wanted && upto > held) {
            let data = wrap_snapshot(&self.peers, &self.machine.snapshot()?)?;
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
        if let Some((_, _, reply)) = self.membership.take() {
            let _ = reply.send(Err(Error::sql(
                sqlstate::STATEMENT_COMPLETION_UNKNOWN,
                "the raft leader changed while the change of the leader replicas was in \
                 flight: it may or may not have been committed",
            )));
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
        let conf = self.node.store().conf_state();
        let member = conf.voters.contains(&raft.id) || conf.learners.contains(&raft.id);
        status.role = match raft.state {
            _ if self.removed => "removed",
            _ if !member && conf.voters.is_empty() => "joining",
            _ if !member => "removed",
            StateRole::Leader => "leader",
            StateRole::Follower if conf.learners.contains(&raft.id) => "learner",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        status.initialized = true;
        status.term = raft.term;
        status.leader_id = raft.leader_id;
        status.commit_index = raft.raft_log.committed;
        status.applied_index = self.applied;
        status.last_index = raft.raft_log.last_index();
        status.voters = conf.voters.clone();
        status.learners = conf.learners.clone();
        if status.peers != self.peers {
            status.peers = self.peers.clone();
        }
        status.matched = if raft.state == StateRole::Leader {
            raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect()
        } else {
            BTreeMap::new()
        };
    }
}

/// Whether a message carries a snapshot (the transport reports how sending it went).
pub fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgSnapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl StateMachine for Nothing {
        type Output = ();
        fn apply(&mut self, _command: &[u8]) {}
        fn snapshot(&self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn restore(&mut self, _data: &[u8]) -> Result<()> {
            Ok(())
        }
        fn bootstrap(&self) -> Option<Vec<u8>> {
            None
        }
    }

    /// A replica whose disk was wiped joins again; before the raft leader has removed and
    /// re-added it, the leader's heartbeat still carries the commit index the old disk had
    /// reached. raft-rs would panic on it (the driver thread dies, the process exits); the
    /// driver answers it instead, with the commit it really has.
    #[test]
    fn a_wiped_joining_replica_answers_a_heartbeat_past_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ReplicaConfig {
            node_id: 3,
            peers: BTreeMap::from([(3, "127.0.0.1:1".to_string())]),
            join: vec!["127.0.0.1:2".to_string()],
        };
        let mut started = start(dir.path(), &config, Nothing, 64).expect("start");
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.from = 1;
        heartbeat.to = 3;
        heartbeat.term = 5;
        heartbeat.commit = 40;
        started.replica.deliver(heartbeat);
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            match started.outgoing.try_recv() {
                Ok(m) if m.get_msg_type() == MessageType::MsgHeartbeatResponse => break m,
                Ok(_) => {}
                Err(_) => {
                    assert!(Instant::now() < deadline, "no heartbeat response");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        assert_eq!((answer.to, answer.commit), (1, 0));
        started.replica.stop();
        started
            .thread
            .join()
            .expect("the driver thread ends cleanly");
    }
}
