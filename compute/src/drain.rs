//! Leaving the cluster without failing a query. On SIGTERM a compute node drains:
//!
//! 1. its heartbeat tells the leader at once that it is draining; the leader leaves it out
//!    of every slice map made after that (each statement takes one when it starts);
//! 2. it keeps serving the statements that already use it (stages, exchange reads, loads)
//!    until it has been idle for [`QUIET`]: long enough for a statement that took its slice
//!    map just before the leader heard of the drain to reach the node;
//! 3. it calls `Leave` (the leader forgets it) and stops.
//!
//! If the leader cannot be reached, nobody will read what the node still holds, so it stops
//! at once; after `drain_timeout` it stops anyway (the leader retries what it loses). It must
//! not refuse work while draining: a stage that arrives late belongs to a statement that
//! counts on this node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blueshift_proto::v1::LeaveRequest;
use blueshift_proto::v1::cluster_client::ClusterClient;

use crate::exchange::Exchanges;
use crate::membership::{NodeState, heartbeat_now};

/// How long a draining node must have been idle before it leaves.
pub const QUIET: Duration = Duration::from_secs(1);
/// How long to wait for the leader to hear of the drain.
const TELL_LEADER: Duration = Duration::from_secs(5);
/// A draining node whose leader has not answered for this long stops waiting.
const LEADER_GONE: Duration = Duration::from_secs(5);

/// Requests in progress that are not part of a query's stages (loads).
#[derive(Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the node is doing, for the drain to wait on.
pub struct Work {
    pub exchanges: Arc<Exchanges>,
    pub loads: Arc<InFlight>,
}

impl Work {
    fn busy(&self) -> bool {
        self.exchanges.active_queries() > 0 || self.loads.count() > 0
    }
}

/// Drains the node (see the module doc); returns when it may stop. The caller stops the
/// heartbeat loop before the node's last word, `Leave`, so it does not register again.
pub async fn drain(
    node: &NodeState,
    work: &Work,
    timeout: Duration,
    stop_heartbeats: impl FnOnce(),
) {
    let started = Instant::now();
    node.start_draining();
    tracing::info!(
        node_id = node.node_id(),
        "draining: no new work; finishing running work"
    );
    // 1. Tell the leader, and wait until it has heard.
    let told = match tokio::time::timeout(TELL_LEADER, heartbeat_now(node)).await {
        Ok(Ok(true)) => true,
        // Unknown to the leader (it restarted, or we never registered): the heartbeat loop
        // registers again, saying it drains.
        Ok(Ok(false)) => loop {
            if node.drain_acknowledged_at().is_some() {
                break true;
            }
            if started.elapsed() > TELL_LEADER {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        },
        Ok(Err(_)) | Err(_) => false,
    };
    if !told {
        tracing::warn!(leader = %node.leader, "leader unreachable while draining; stopping now");
        stop_heartbeats();
        return;
    }
    // 2. Wait for the running work, then for a quiet spell.
    let mut idle_since: Option<Instant> = None;
    loop {
        if work.busy() {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= QUIET {
            break;
        }
        if started.elapsed() > timeout {
            tracing::warn!(
                queries = work.exchanges.active_queries(),
                loads = work.loads.count(),
                "drain timeout reached; stopping with work still running"
            );
            break;
        }
        if node
            .drain_acknowledged_at()
            .is_none_or(|at| at.elapsed() > LEADER_GONE)
        {
            tracing::warn!(leader = %node.leader, "leader gone while draining; stopping now");
            stop_heartbeats();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 3. Say goodbye.
    stop_heartbeats();
    let leave = async {
        let mut client = ClusterClient::connect(node.leader.clone()).await.ok()?;
        client
            .leave(LeaveRequest {
                node_id: node.node_id(),
                node_name: node.name.clone(),
            })
            .await
            .ok()
    };
    match tokio::time::timeout(TELL_LEADER, leave).await {
        Ok(Some(_)) => tracing::info!(
            node_id = node.node_id(),
            secs = started.elapsed().as_secs_f64(),
            "drained and left the cluster"
        ),
        _ => tracing::warn!("drained, but the leader did not hear the goodbye"),
    }
}
