//! The leader's HTTP admin endpoint, for probes and load balancers:
//!
//! * `GET /health`: 200 while the process runs (a liveness probe).
//! * `GET /ready`: 200 when this replica can answer statements: its catalog is loaded, it
//!   knows a raft leader, it has applied everything that leader told it was committed, and
//!   at least `expect_nodes` compute nodes are live; otherwise 503. Both carry a JSON body
//!   with the replica's raft role, term, leader, commit and applied index (what
//!   `stv_leader_replicas` shows for it) and the live compute nodes, and `/ready` says why
//!   it is not ready. A Kubernetes Service routes only to ready replicas.
//!
//! It serves from the start, before the catalog is ready (a new raft group elects its
//! leader meanwhile). It must not run statements or change anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::cluster::Membership;

/// What the endpoint reports on.
pub struct Health {
    pub catalog: Arc<Catalog>,
    pub membership: Arc<Membership>,
    pub expect_nodes: usize,
    /// Set once the catalog has caught up at start ([`Catalog::wait_ready`]).
    pub catalog_loaded: AtomicBool,
}

impl Health {
    /// Whether the replica can answer, and if not why; the status as JSON.
    fn check(&self) -> (Option<String>, serde_json::Value) {
        let status = self.catalog.replica_status();
        let nodes = self.membership.live_nodes().len();
        let not_ready = if !self.catalog_loaded.load(Ordering::SeqCst) {
            Some("the catalog is not loaded yet (waiting for the leader replicas)".to_string())
        } else if matches!(status.role, "removed" | "undecided" | "joining") {
            Some(format!("this replica is {}", status.role))
        } else if status.leader_id == raft::INVALID_ID {
            Some("no raft leader is known (an election is under way, or this replica is cut off from a majority)".to_string())
        } else if status.applied_index < status.commit_index {
            Some(format!(
                "catching up: applied {} of {} committed",
                status.applied_index, status.commit_index
            ))
        } else if nodes < self.expect_nodes {
            Some(format!(
                "{nodes} of {} expected compute nodes are live",
                self.expect_nodes
            ))
        } else {
            None
        };
        let body = serde_json::json!({
            "ready": not_ready.is_none(),
            "reason": not_ready,
            "node_id": status.node_id,
            "role": status.role,
            "term": status.term,
            "leader_id": status.leader_id,
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "voters": status.voters,
            "learners": status.learners,
            "compute_nodes": nodes,
        });
        (not_ready, body)
    }
}

fn json(code: StatusCode, body: serde_json::Value) -> impl IntoResponse {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

async fn health(State(h): State<Arc<Health>>) -> impl IntoResponse {
    json(StatusCode::OK, h.check().1)
}

async fn ready(State(h): State<Arc<Health>>) -> impl IntoResponse {
    match h.check() {
        (None, body) => json(StatusCode::OK, body),
        (Some(_), body) => json(StatusCode::SERVICE_UNAVAILABLE, body),
    }
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    let app = Router::new()
        .route("/health", get(self::health))
        .route("/ready", get(self::ready))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the HTTP admin endpoint stopped");
    }
}
