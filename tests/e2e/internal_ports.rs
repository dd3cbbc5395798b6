//! The cluster's internal ports are closed to strangers: pyarrow's Flight client and a raw
//! gRPC client (grpcio) without the cluster's proof of membership, or with a proof of a
//! wrong secret, are refused (UNAUTHENTICATED) on every leader cluster port (Register,
//! Heartbeat, Leave, raft Send / Describe / ChangeMembership) and every compute Flight port
//! (list_actions, do_get, do_put, do_action) — tests/clients/internal_ports.py. With a
//! valid proof (made in Python from the secret file), a compute node still refuses a plan
//! that scans `/etc/passwd` (the plan codec's allow-list) and runs one that selects a
//! constant.

use std::process::{Command, Stdio};

use blueshift_tests::paths::{python, workspace_root};
use blueshift_tests::pg;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use prost::Message;

use crate::common::scratch_cluster;

/// A StartStage of stage 1 of a new query whose plan is `sql`'s physical plan.
async fn start_stage(ctx: &SessionContext, sql: &str) -> Vec<u8> {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let plan = blueshift_common::codec::encode_plan(plan).unwrap();
    blueshift_proto::v1::StartStage {
        query_id: format!(
            "{:032x}",
            std::process::id() as u128 * 7919 + plan.len() as u128
        ),
        stage_id: 1,
        plan: plan.to_vec(),
        partitions: vec![0],
        kind: blueshift_proto::v1::ExchangeKind::Gather as i32,
        consume_once: true,
        memory_limit: 1 << 20,
        query_memory_limit: 0,
    }
    .encode_to_vec()
}

#[tokio::test]
async fn internal_ports_refuse_strangers_and_compute_nodes_refuse_file_scans() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let computes: Vec<String> = pg::query(
        &client,
        "select distinct address from stv_slices order by address",
    )
    .await
    .unwrap()
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect();
    assert_eq!(computes.len(), 2, "{computes:?}");

    let ctx = SessionContext::new();
    ctx.register_csv(
        "passwd",
        "/etc/passwd",
        CsvReadOptions::new()
            .has_header(false)
            .delimiter(b':')
            .file_extension(""),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad_plan = dir.path().join("bad_plan");
    std::fs::write(&bad_plan, start_stage(&ctx, "select * from passwd").await).unwrap();
    let good_plan = dir.path().join("good_plan");
    std::fs::write(&good_plan, start_stage(&ctx, "select 42 as answer").await).unwrap();

    let spec = serde_json::json!({
        "leader_grpc": [format!("127.0.0.1:{}", cluster.grpc_port())],
        "compute_flight": computes,
        "secret_file": cluster.cluster_secret_file(),
        "bad_plan": bad_plan,
        "good_plan": good_plan,
    });
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests/clients/internal_ports.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the venv's Python (tests/run-all.sh makes it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(spec.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "internal_ports.py: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let strangers = result["strangers"].as_object().unwrap();
    // 3 kinds of stranger x (2 compute nodes x 5 calls + 1 leader x 7 calls).
    assert_eq!(strangers.len(), 3 * (2 * 5 + 7), "{strangers:?}");
    let let_in: Vec<_> = strangers
        .iter()
        .filter(|(_, outcome)| *outcome != "unauthenticated")
        .collect();
    assert!(
        let_in.is_empty(),
        "not refused as UNAUTHENTICATED: {let_in:?}"
    );

    let member = &result["member"];
    assert_eq!(member["list_actions"], "ok", "{member}");
    assert_eq!(member["leader Describe"], "ok", "{member}");
    assert_eq!(member["good_plan"], "ok", "{member}");
    let refused = member["bad_plan"].as_str().unwrap();
    assert!(
        refused.contains("compute nodes do not run plans with this source")
            && refused.contains("DataSourceExec"),
        "{member}"
    );
}
