//! Joining the cluster: register with the leader (retrying until it answers), learn where the
//! segment store is, then heartbeat. If the leader forgets us (it restarted), register again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use blueshift_proto::v1::cluster_client::ClusterClient;
use blueshift_proto::v1::{HeartbeatRequest, RegisterRequest};

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

pub async fn run(leader: String, node_name: String, flight_addr: String, engine: Arc<Engine>) {
    loop {
        match register_and_heartbeat(&leader, &node_name, &flight_addr, &engine).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(%leader, error = %e, "leader unreachable; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn register_and_heartbeat(
    leader: &str,
    node_name: &str,
    flight_addr: &str,
    engine: &Engine,
) -> Result<()> {
    let mut client = ClusterClient::connect(leader.to_string())
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    let reply = client
        .register(RegisterRequest {
            node_name: node_name.to_string(),
            flight_addr: flight_addr.to_string(),
        })
        .await
        .map_err(|e| Error::Transport(e.to_string()))?
        .into_inner();
    let leader_s3 =
        blueshift_common::store::S3Options::from_proto(reply.store_options.unwrap_or_default());
    engine.set_store(&reply.store_url, &leader_s3)?;
    tracing::info!(node_id = reply.node_id, store = %reply.store_url, "registered with leader");
    let interval = Duration::from_millis(u64::from(reply.heartbeat_interval_ms.max(100)));
    loop {
        tokio::time::sleep(interval).await;
        let known = client
            .heartbeat(HeartbeatRequest {
                node_id: reply.node_id,
                flight_addr: flight_addr.to_string(),
                node_name: node_name.to_string(),
            })
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .into_inner()
            .known;
        if !known {
            return Ok(());
        }
    }
}
