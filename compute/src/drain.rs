//! Leaving the cluster without failing a statement. On SIGTERM a compute node drains:
//!
//! 1. its heartbeat tells the leader at once that it is draining; the leader leaves it out
//!    of every slice map made after that (each statement takes one when it starts);
//! 2. it keeps serving the statements that already hold a slice map naming it (stages,
//!    exchange reads, loads) until the leader's heartbeat answer says none is left and no
//!    load is being written here;
//! 3. it calls `Leave` (the leader forgets it) and stops.
//!
//! The leader counts the statements, not the node: a statement may hold its map for a while
//! before it first reaches this node (planning, a load whose first rows for these slices
//! come late), and queries the leader never released (it restarted) must not keep a node
//! from leaving. If the leader cannot be reached, nobody will read what the node still
//! holds, so it stops; after `drain_timeout` it stops anyway (the leader retries the
//! queries it loses). It must not refuse work while draining.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blueshift_proto::v1::LeaveRequest;

use crate::membership::{self, NodeState, heartbeat_now};

/// How long to wait for the leader to hear of the drain.
const TELL_LEADER: Duration = Duration::from_secs(5);
/// A draining node whose leader has not answered for this long stops waiting.
const LEADER_GONE: Duration = Duration::from_secs(5);
/// How often a draining node asks the leader whether statements still use it.
const POLL: Duration = Duration::from_millis(100);

/// Loads being written on this node (a drain also waits for them).
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

/// Drains the node (see the module doc); returns when it may stop. `stop_heartbeats` is
/// called before the node's last word, `Leave`, so that it does not register again.
pub async fn drain(
    node: &NodeState,
    loads: &InFlight,
    timeout: Duration,
    stop_heartbeats: impl FnOnce(),
) {
    let started = Instant::now();
    node.start_draining();
    tracing::info!(
        node_id = node.node_id(),
        "draining: no new work; finishing running work"
    );
    let mut client =
        match tokio::time::timeout(TELL_LEADER, membership::connect(&node.leader)).await {
            Ok(Ok(c)) => Some(c),
            _ => None,
        };
    let mut last_heard = Instant::now();
    loop {
        // Ask the leader directly (the heartbeat loop also says we drain, every 500 ms).
        if let Some(c) = client.as_mut() {
            match tokio::time::timeout(TELL_LEADER, heartbeat_now(node, c)).await {
                Ok(Ok(Some(_))) => last_heard = Instant::now(),
                Ok(Ok(None)) => {} // re-registering through the heartbeat loop
                Ok(Err(_)) | Err(_) => client = None,
            }
        }
        if let Some(answer) = node.drain_answer() {
            last_heard = last_heard.max(answer.at);
            if answer.statements == 0 && loads.count() == 0 {
                break;
            }
        }
        if last_heard.elapsed() > LEADER_GONE {
            tracing::warn!(leader = %node.leader, "leader unreachable while draining; stopping now");
            stop_heartbeats();
            return;
        }
        if started.elapsed() > timeout {
            tracing::warn!(
                statements = node.drain_answer().map(|a| a.statements),
                loads = loads.count(),
                "drain timeout reached; stopping with work still running"
            );
            break;
        }
        if client.is_none() {
            client = membership::connect(&node.leader).await.ok();
        }
        tokio::time::sleep(POLL).await;
    }
    // Say goodbye.
    stop_heartbeats();
    let leave = async {
        let mut client = match client {
            Some(c) => c,
            None => membership::connect(&node.leader).await.ok()?,
        };
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
