//! `EXPLAIN` of a distributed plan: the leader's steps, then every stage with where it runs,
//! and on every join Redshift's label for how its inputs were placed:
//!
//! | label | meaning |
//! |---|---|
//! | `DS_DIST_NONE` | both sides already on the right slices (collocated), nothing moves |
//! | `DS_DIST_ALL_NONE` | the inner (build) side is a `DISTSTYLE ALL` table read locally |
//! | `DS_BCAST_INNER` | the inner side is gathered and broadcast to every node |
//! | `DS_DIST_INNER` | the inner side is redistributed by the join key |
//! | `DS_DIST_OUTER` | the outer (probe) side is redistributed |
//! | `DS_DIST_BOTH` | both sides are redistributed |
//!
//! DataFusion's build side (left) is Redshift's inner side.

use std::sync::Arc;

use blueshift_common::exchange::{ExchangeReaderExec, ReadMode};
use blueshift_common::scan::SliceScanExec;
use blueshift_proto::v1::{ExchangeKind, PartitionMetrics, StageMetrics};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode, SortMergeJoinExec,
};
use datafusion::physical_plan::{ExecutionPlan, displayable};

use crate::scheduler::{Analysis, DistributedQueryExec, Stage};

/// The lines of `EXPLAIN` for a planned query.
pub fn explain_lines(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let Some(query) = plan.downcast_ref::<DistributedQueryExec>() else {
        let mut lines = vec!["Leader (runs on the leader node):".to_string()];
        render(plan, 1, &mut lines);
        return lines;
    };
    let mut lines = vec!["Leader (runs on the leader node):".to_string()];
    render(query.root(), 1, &mut lines);
    for stage in query.stages().iter().rev() {
        lines.push(stage_header(stage));
        render(&stage.plan, 1, &mut lines);
    }
    lines
}

/// The lines of `EXPLAIN ANALYZE`: the plan as `EXPLAIN` prints it, with what each part did.
/// For every stage: rows and bytes its producers sent, summed over slices and for the
/// busiest slice (skew), producer time likewise, spilled batches, and each node's plan with
/// DataFusion's operator metrics.
pub fn analyze_lines(query: &DistributedQueryExec, analysis: &Analysis) -> Vec<String> {
    let mut lines = vec![format!(
        "Leader (runs on the leader node): {} rows in {:.3} ms",
        analysis.rows,
        analysis.elapsed.as_secs_f64() * 1e3
    )];
    let (hits, misses, store_bytes) = analysis.nodes.iter().fold((0, 0, 0), |acc, (_, m)| {
        (
            acc.0 + m.cache_hits,
            acc.1 + m.cache_misses,
            acc.2 + m.store_bytes,
        )
    });
    lines.push(format!(
        "Segment cache: hits={hits}, misses={misses}, bytes read from the store={store_bytes}"
    ));
    for l in DisplayableExecutionPlan::with_metrics(query.root().as_ref())
        .indent(true)
        .to_string()
        .lines()
    {
        lines.push(format!("  {l}"));
    }
    for stage in query.stages().iter().rev() {
        lines.push(stage_header(stage));
        let mut parts: Vec<&PartitionMetrics> = Vec::new();
        let mut per_node: Vec<(&str, &StageMetrics)> = Vec::new();
        for (addr, metrics) in &analysis.nodes {
            for s in metrics.stages.iter().filter(|s| s.stage_id == stage.id) {
                parts.extend(s.partitions.iter());
                per_node.push((addr.as_str(), s));
            }
        }
        let sum = |f: fn(&PartitionMetrics) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
        let max = |f: fn(&PartitionMetrics) -> u64| parts.iter().map(|p| f(p)).max().unwrap_or(0);
        lines.push(format!(
            "  sent: rows={} (max slice {}), bytes={} (max slice {}); producer time: sum={:.3} ms, max slice={:.3} ms; spilled batches={}",
            sum(|p| p.rows),
            max(|p| p.rows),
            sum(|p| p.bytes),
            max(|p| p.bytes),
            sum(|p| p.micros) as f64 / 1e3,
            max(|p| p.micros) as f64 / 1e3,
            sum(|p| p.spilled_batches),
        ));
        render(&stage.plan, 1, &mut lines);
        for (addr, s) in per_node {
            let partitions: Vec<String> = s
                .partitions
                .iter()
                .map(|p| p.partition.to_string())
                .collect();
            lines.push(format!(
                "  on node {addr} (partitions {}):",
                partitions.join(", ")
            ));
            for l in s.plan_with_metrics.lines() {
                lines.push(format!("    {l}"));
            }
        }
    }
    lines
}

fn stage_header(stage: &Stage) -> String {
    let mut nodes: Vec<&str> = stage.placement.iter().map(String::as_str).collect();
    nodes.sort();
    nodes.dedup();
    let what = match stage.kind {
        ExchangeKind::Hash => "redistributes its rows by the slice hash",
        ExchangeKind::RoundRobin => "redistributes its rows round-robin",
        ExchangeKind::Gather if stage.consume_once => "sends its rows to the leader",
        ExchangeKind::Gather => "broadcasts its rows to the nodes that read it",
    };
    format!(
        "Stage {} (runs on {} compute node{}, {} partition{}; {what}):",
        stage.id,
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        stage.placement.len(),
        if stage.placement.len() == 1 { "" } else { "s" },
    )
}

fn render(plan: &Arc<dyn ExecutionPlan>, depth: usize, out: &mut Vec<String>) {
    // The yield points the distributor puts on every edge are not steps of the plan.
    if plan.is::<CooperativeExec>()
        && let Some(child) = plan.children().first()
    {
        return render(child, depth, out);
    }
    let line = displayable(plan.as_ref()).one_line().to_string();
    let line = line.trim_end();
    match join_label(plan) {
        Some(label) => out.push(format!("{}{label} {line}", "  ".repeat(depth))),
        None => out.push(format!("{}{line}", "  ".repeat(depth))),
    }
    for c in plan.children() {
        render(c, depth + 1, out);
    }
}

/// The Redshift distribution label of a join node, `None` for other nodes.
pub fn join_label(plan: &Arc<dyn ExecutionPlan>) -> Option<&'static str> {
    let partitioned = if let Some(j) = plan.downcast_ref::<HashJoinExec>() {
        !matches!(j.partition_mode(), PartitionMode::CollectLeft)
    } else if plan.is::<SortMergeJoinExec>() {
        true
    } else if plan.is::<NestedLoopJoinExec>() || plan.is::<CrossJoinExec>() {
        false
    } else {
        return None;
    };
    let children = plan.children();
    let (inner, outer) = (children.first()?, children.get(1)?);
    if partitioned {
        let label = match (
            arrival(inner) == Arrival::Redistributed,
            arrival(outer) == Arrival::Redistributed,
        ) {
            (false, false) => "DS_DIST_NONE",
            (true, false) => "DS_DIST_INNER",
            (false, true) => "DS_DIST_OUTER",
            (true, true) => "DS_DIST_BOTH",
        };
        return Some(label);
    }
    Some(match arrival(inner) {
        Arrival::Gathered => "DS_BCAST_INNER",
        Arrival::Local if reads_table(inner) => "DS_DIST_ALL_NONE",
        _ => "DS_DIST_NONE",
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    /// Read where it is stored (or computed from such rows).
    Local,
    Redistributed,
    Gathered,
}

/// How the rows of a join input got to the join: follows single-input steps down to the
/// nearest exchange, stopping at other joins and aggregations (their own exchanges were
/// for them, not for this join).
fn arrival(plan: &Arc<dyn ExecutionPlan>) -> Arrival {
    if let Some(r) = plan.downcast_ref::<ExchangeReaderExec>() {
        return match r.mode() {
            ReadMode::Buckets => Arrival::Redistributed,
            ReadMode::Gather => Arrival::Gathered,
        };
    }
    let name = plan.name();
    if name.contains("Join") || name.contains("Aggregate") {
        return Arrival::Local;
    }
    let children = plan.children();
    match children.as_slice() {
        [only] => arrival(only),
        _ => Arrival::Local,
    }
}

fn reads_table(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<SliceScanExec>() || plan.children().into_iter().any(reads_table)
}
