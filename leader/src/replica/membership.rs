//! Who the leader replicas are, and changing it. Only the raft leader changes membership,
//! one change at a time ([`change_on_leader`]); every other replica, and a replica that
//! wants to join, sends its request to the leader over the `Raft` service's
//! `ChangeMembership` ([`request_change`] follows the leader's address when it moves).
//!
//! * Adding a replica: it is added as a raft *learner* (it receives the log, or a snapshot
//!   when the log was compacted, but does not vote), and promoted to voter once it holds
//!   everything committed when it was added, so a slow newcomer never costs the group its
//!   quorum. A replica that asks to be added while it is a voter already and its log is
//!   empty lost its disk: it forgot the votes it cast, so it is removed first and added
//!   back, rather than let it vote twice in one term.
//! * A replica with an empty data dir given several `--peers` does not know whether its
//!   group is new or exists already (its disk was wiped): [`decide`] asks the peers, and
//!   starts a new group only when a majority of it (itself included) is empty too;
//!   otherwise it joins.
//! * Removing a replica (SQL `ALTER CLUSTER REMOVE REPLICA n`, or an operator's request):
//!   the raft leader removing itself hands leadership to another voter first.
//!
//! This module must not change membership any other way than through raft's log.

use std::collections::BTreeMap;
use std::time::Duration;

use blueshift_common::error::sqlstate;
use blueshift_proto::v1::membership_change::Kind;
use blueshift_proto::v1::{DescribeRequest, GroupDescription, MembershipChange, MembershipReply};
use raft::prelude::{ConfChange, ConfChangeType};

use super::{Replica, ReplicaConfig, ReplicaStatus};
use crate::error::{Error, Result};

/// How long the raft leader waits for an added learner to catch up before it answers
/// "not yet" (the joiner asks again).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a membership request keeps following the leader before it gives up.
const REQUEST_DEADLINE: Duration = Duration::from_secs(90);
const RETRY_PAUSE: Duration = Duration::from_millis(300);
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a replica tells others about its group.
pub fn describe(status: &ReplicaStatus) -> GroupDescription {
    GroupDescription {
        node_id: status.node_id,
        initialized: status.initialized,
        term: status.term,
        last_index: status.last_index,
        voters: status.voters.clone(),
        learners: status.learners.clone(),
        leader_id: status.leader_id,
        peers: status.peers.clone().into_iter().collect(),
    }
}

fn leader_address(status: &ReplicaStatus) -> String {
    if status.leader_id == raft::INVALID_ID {
        return String::new();
    }
    status
        .peers
        .get(&status.leader_id)
        .cloned()
        .unwrap_or_default()
}

fn not_done(status: &ReplicaStatus) -> MembershipReply {
    MembershipReply {
        done: false,
        // A removed replica's idea of the leader is stale.
        leader_address: if status.role == "removed" {
            String::new()
        } else {
            leader_address(status)
        },
        group: Some(describe(status)),
    }
}

fn retry_later(message: impl Into<String>) -> Error {
    Error::sql(sqlstate::CANNOT_CONNECT_NOW, message)
}

fn change(kind: ConfChangeType, node_id: u64, address: &str) -> ConfChange {
    let mut change = ConfChange {
        node_id,
        context: address.as_bytes().to_vec().into(),
        ..Default::default()
    };
    change.set_change_type(kind);
    change
}

/// Carries out a membership change if this replica is the raft leader; otherwise (or when
/// leadership moves meanwhile) answers `done: false` with the leader's address.
pub async fn change_on_leader<O: Send + 'static>(
    replica: &Replica<O>,
    request: &MembershipChange,
) -> Result<MembershipReply> {
    let status = replica.status();
    if status.role != "leader" {
        return Ok(not_done(&status));
    }
    let id = request.node_id;
    if id == raft::INVALID_ID {
        return Err(Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            "a leader replica's id must be a number > 0",
        ));
    }
    match request.kind() {
        Kind::Add => add(replica, request, status).await,
        Kind::Remove => remove(replica, id, status).await,
    }
}

async fn add<O: Send + 'static>(
    replica: &Replica<O>,
    request: &MembershipChange,
    status: ReplicaStatus,
) -> Result<MembershipReply> {
    let (id, address) = (request.node_id, request.address.as_str());
    if id == status.node_id {
        return Err(Error::sql(
            sqlstate::DUPLICATE_OBJECT,
            format!(
                "leader replica {id} is the raft leader itself: give the new replica another id"
            ),
        ));
    }
    if address.is_empty() {
        return Err(Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("replica {id} gave no address to reach it at"),
        ));
    }
    if status.voters.contains(&id) {
        if !request.fresh {
            // Added before (an earlier answer was lost): nothing to do.
            return Ok(done(replica));
        }
        tracing::info!(
            replica = id,
            "a voter with an empty log asks to join: removing it first"
        );
        replica
            .propose_membership(change(ConfChangeType::RemoveNode, id, ""))
            .await?;
    }
    if !replica.status().learners.contains(&id) {
        replica
            .propose_membership(change(ConfChangeType::AddLearnerNode, id, address))
            .await?;
    }
    // The published status follows the applied change a moment later; until it shows the
    // learner, its progress shown may be the removed voter's.
    let shown = tokio::time::Instant::now() + Duration::from_secs(2);
    while !replica.status().learners.contains(&id) && tokio::time::Instant::now() < shown {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Promote once it holds what was committed when it was added.
    let target = replica.status().commit_index;
    let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let status = replica.status();
        if status.role != "leader" {
            return Ok(not_done(&status));
        }
        if status.matched.get(&id).copied().unwrap_or(0) >= target {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(retry_later(format!(
                "leader replica {id} is still catching up with the log (index {} of {target})",
                status.matched.get(&id).copied().unwrap_or(0)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica
        .propose_membership(change(ConfChangeType::AddNode, id, address))
        .await?;
    tracing::info!(replica = id, address, "leader replica added as a voter");
    Ok(done(replica))
}

async fn remove<O: Send + 'static>(
    replica: &Replica<O>,
    id: u64,
    status: ReplicaStatus,
) -> Result<MembershipReply> {
    if !status.voters.contains(&id) && !status.learners.contains(&id) {
        return Err(Error::sql(
            sqlstate::UNDEFINED_OBJECT,
            format!("leader replica {id} is not a member of the group"),
        ));
    }
    if status.voters == [id] {
        return Err(Error::sql(
            sqlstate::OBJECT_IN_USE,
            format!("leader replica {id} is the only voter of the group: it cannot be removed"),
        ));
    }
    if id == status.node_id {
        // Hand leadership to the best caught-up other voter, and let it do the removal.
        let next = status
            .voters
            .iter()
            .filter(|v| **v != id)
            .max_by_key(|v| status.matched.get(v).copied().unwrap_or(0))
            .copied();
        if let Some(next) = next {
            replica.transfer_leader(next);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while replica.status().role == "leader" && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        return Ok(not_done(&replica.status()));
    }
    let address = status.peers.get(&id).cloned().unwrap_or_default();
    replica
        .propose_membership(change(ConfChangeType::RemoveNode, id, ""))
        .await?;
    tracing::info!(replica = id, "leader replica removed");
    if !address.is_empty() {
        let own = status
            .peers
            .get(&status.node_id)
            .cloned()
            .unwrap_or_default();
        tokio::spawn(async move {
            super::transport::tell_removed(status.node_id, own, &address).await;
        });
    }
    Ok(done(replica))
}

fn done<O: Send + 'static>(replica: &Replica<O>) -> MembershipReply {
    MembershipReply {
        done: true,
        leader_address: String::new(),
        group: Some(describe(&replica.status())),
    }
}

fn from_status(status: &tonic::Status, addr: &str) -> Error {
    if status
        .metadata()
        .get(blueshift_common::error::SQLSTATE_METADATA)
        .is_some()
    {
        return Error::Common(blueshift_common::Error::from_status(status, addr));
    }
    Error::Transport(format!("leader replica {addr}: {}", status.message()))
}

fn retryable(e: &Error) -> bool {
    matches!(e, Error::Transport(_))
        || matches!(
            e.sqlstate().as_str(),
            sqlstate::CANNOT_CONNECT_NOW
                | sqlstate::STATEMENT_COMPLETION_UNKNOWN
                | sqlstate::OBJECT_IN_USE
                | sqlstate::CONNECTION_FAILURE
        )
}

/// Sends a membership change to the raft leader (this replica, or the one its peers name),
/// following the leader as it moves, until it is done or [`REQUEST_DEADLINE`] passes.
/// `hints` are addresses to ask while no leader is known.
pub async fn request_change<O: Send + 'static>(
    replica: &Replica<O>,
    request: MembershipChange,
    hints: &[String],
) -> Result<GroupDescription> {
    let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    let mut next_hint = 0;
    let mut redirect = String::new();
    let mut last_error = retry_later("no raft leader is known");
    while tokio::time::Instant::now() < deadline {
        let status = replica.status();
        let mut asked = String::new();
        let outcome = if status.role == "leader" {
            change_on_leader(replica, &request).await
        } else {
            let target = if !redirect.is_empty() {
                std::mem::take(&mut redirect)
            } else if !leader_address(&status).is_empty() {
                leader_address(&status)
            } else if !hints.is_empty() {
                next_hint += 1;
                hints[(next_hint - 1) % hints.len()].clone()
            } else {
                String::new()
            };
            if target.is_empty() {
                Err(retry_later("no raft leader is known"))
            } else {
                asked = target.clone();
                match super::transport::connect(&target) {
                    None => Err(Error::Config(format!(
                        "bad leader replica address {target}"
                    ))),
                    Some(mut client) => client
                        .change_membership(request.clone())
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| from_status(&s, &target)),
                }
            }
        };
        match outcome {
            Ok(reply) if reply.done => return Ok(reply.group.unwrap_or_default()),
            // A replica that names itself is not the leader any more (or not yet).
            Ok(reply) if reply.leader_address != asked => redirect = reply.leader_address,
            Ok(_) => {}
            Err(e) if retryable(&e) => last_error = e,
            Err(e) => return Err(e),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(last_error)
}

/// Asks each other peer what it knows of the group.
async fn describe_peers(peers: &BTreeMap<u64, String>, own: u64) -> Vec<GroupDescription> {
    let asks = peers
        .iter()
        .filter(|(id, _)| **id != own)
        .filter_map(|(_, addr)| super::transport::connect(addr))
        .map(|mut client| async move {
            tokio::time::timeout(DESCRIBE_TIMEOUT, client.describe(DescribeRequest {}))
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|r| r.into_inner())
        });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// For a replica that starts undecided (an empty data dir, several peers): finds out from
/// the peers whether the group is new, then starts the replica in it or joins it.
pub async fn decide<O: Send + 'static>(replica: Replica<O>, config: ReplicaConfig) {
    let quorum = config.peers.len() / 2 + 1;
    let mut last_log = tokio::time::Instant::now();
    loop {
        let replies = describe_peers(&config.peers, config.node_id).await;
        if replies.iter().any(|g| g.last_index > 0) {
            tracing::warn!(
                "this replica's data dir is empty but its group exists (its disk was wiped or \
                 it was added later): joining the group from a snapshot"
            );
            replica.start_joining();
            join(replica, config).await;
            return;
        }
        if 1 + replies.len() >= quorum {
            replica.initialize(config.peers.keys().copied().collect());
            return;
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            tracing::info!(
                answered = replies.len(),
                needed = quorum - 1,
                "waiting for the other leader replicas to find out whether the group is new"
            );
            last_log = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// For a replica with an empty data dir joining an existing group: asks the raft leader to
/// add it, until it is a voter.
pub async fn join<O: Send + 'static>(replica: Replica<O>, config: ReplicaConfig) {
    let Some(address) = config
        .peers
        .get(&config.node_id)
        .filter(|a| !a.is_empty())
        .cloned()
    else {
        tracing::error!("a joining replica needs its own address (--advertise-address)");
        return;
    };
    let hints: Vec<String> = if config.join.is_empty() {
        config
            .peers
            .iter()
            .filter(|(id, _)| **id != config.node_id)
            .map(|(_, a)| a.clone())
            .collect()
    } else {
        config.join.clone()
    };
    // Whether it began with an empty log, fixed now: a snapshot from the leader may arrive
    // (and make it look like a voter) before the leader has answered. It is a member only
    // once the leader says so.
    let fresh = replica.status().last_index == 0;
    loop {
        let request = MembershipChange {
            kind: Kind::Add as i32,
            node_id: config.node_id,
            address: address.clone(),
            fresh,
        };
        match request_change(&replica, request, &hints).await {
            Ok(group) => {
                for (id, addr) in group.peers {
                    replica.learn_peer(id, addr);
                }
                // The promotion is applied here shortly (it follows the log it needed).
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while !replica.status().voters.contains(&config.node_id)
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                replica.joined();
                tracing::info!(
                    replica = config.node_id,
                    "joined the group of leader replicas"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e.user_message(), "cannot join the leader replicas yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Removes replica `id` from the group (from any replica).
pub async fn remove_replica<O: Send + 'static>(
    replica: &Replica<O>,
    id: u64,
) -> Result<GroupDescription> {
    let request = MembershipChange {
        kind: Kind::Remove as i32,
        node_id: id,
        address: String::new(),
        fresh: false,
    };
    request_change(replica, request, &[]).await
}
