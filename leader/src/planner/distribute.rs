//! Cutting a partitioned physical plan into stages. DataFusion plans the query with one
//! partition per slice; partition `i` of anything above a slice scan runs on the node that
//! owns slice `i`. The plan is cut:
//!
//! * at every `RepartitionExec` over compute-node data: an exchange between compute nodes.
//!   The producers run the repartition's input and route rows by the slice hash (the same
//!   function that placed `DISTKEY` rows, so a redistributed side meets a collocated one);
//! * below every operator that needs all of a child's partitions in one place (a merge, a
//!   final aggregate, the build side of a broadcast join, ...): a gather. Each reader gets
//!   every producer partition's whole output, so a broadcast is a gather read once per node.
//!   A single-partition child without exchanges below (a `DISTSTYLE ALL` table) is not cut:
//!   every node reads its own copy (`DS_DIST_ALL_NONE`);
//! * at the top: what is still bound to compute-node data is gathered to the leader.
//!
//! What stays above the last cut runs on the leader. The result is one
//! [`DistributedQueryExec`] holding the leader's part and the stages.

use std::sync::Arc;

use blueshift_common::exchange::{ExchangeReaderExec, ReadMode};
use blueshift_common::scan::SliceScanExec;
use blueshift_proto::v1::ExchangeKind;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning,
};

use super::join_modes::emits_unmatched_build_rows;
use crate::cluster::SliceMap;
use crate::scheduler::{DistributedQueryExec, SchedulerHandle, Stage};

pub struct Distributor {
    query_id: String,
    slices: SliceMap,
    stages: Vec<Stage>,
}

impl Distributor {
    pub fn new(query_id: String, slices: SliceMap) -> Self {
        Self {
            query_id,
            slices,
            stages: Vec::new(),
        }
    }

    /// Cuts `plan` and wraps the leader's part and the stages into one executable root.
    pub fn distribute(
        mut self,
        plan: Arc<dyn ExecutionPlan>,
        scheduler: Arc<SchedulerHandle>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (mut root, located, _) = self.cut(plan)?;
        if located {
            root = self.gather(root)?;
        }
        if root.output_partitioning().partition_count() > 1 {
            root = Arc::new(CoalescePartitionsExec::new(root));
        }
        // Every batch handed between operators counts against tokio's task budget, so a
        // long CPU-bound stretch (a nested-loop join whose filter rejects everything) still
        // yields regularly, and aborting the task (cancel, timeout, release) takes effect.
        root = cooperative(root)?;
        for stage in &mut self.stages {
            stage.plan = cooperative(stage.plan.clone())?;
        }
        // Gathers read by the leader's part have exactly one reader.
        let mut leader_reads = Vec::new();
        collect_readers(&root, &mut leader_reads);
        for stage in &mut self.stages {
            if leader_reads.contains(&stage.id) {
                stage.consume_once = true;
            }
        }
        Ok(Arc::new(DistributedQueryExec::new(
            self.query_id,
            root,
            self.stages,
            scheduler,
        )))
    }

    /// Returns the rewritten plan, whether it is bound to compute-node data (a slice scan
    /// or a redistributed exchange), i.e. must run inside a stage, and whether it holds a
    /// hash repartition left to DataFusion (over leader-side rows such as a VALUES list).
    fn cut(
        &mut self,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<(Arc<dyn ExecutionPlan>, bool, bool)> {
        if plan.is::<SliceScanExec>() {
            return Ok((plan, true, false));
        }
        let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
        if children.is_empty() {
            return Ok((plan, false, false));
        }
        let mut new_children = Vec::with_capacity(children.len());
        let mut located = Vec::with_capacity(children.len());
        let mut local_hash = Vec::with_capacity(children.len());
        for c in children {
            let (nc, loc, lh) = self.cut(c)?;
            new_children.push(nc);
            located.push(loc);
            local_hash.push(lh);
        }
        // DataFusion's repartition hash is not the slice hash: once rows meet compute-node
        // data, a partitioning made by it would pair with a slice-hash partitioning wrongly.
        // Such children become exchanges too (their rows are then routed by the slice hash).
        if located.iter().any(|l| *l) {
            let requirements = plan.input_distribution_requirements().into_per_child();
            for i in 0..new_children.len() {
                if local_hash[i] {
                    new_children[i] = self.cut_all_repartitions(new_children[i].clone())?;
                    located[i] = true;
                    local_hash[i] = false;
                } else if !located[i]
                    && new_children[i].output_partitioning().partition_count() > 1
                    && needs_one_process(&new_children[i])
                {
                    // A join that must see all its probe rows in one process would run per
                    // partition on several nodes inside this stage: run it once, as a
                    // one-partition gather.
                    if requirements.get(i).is_some_and(|d| {
                        !matches!(
                            d,
                            Distribution::SinglePartition | Distribution::UnspecifiedDistribution
                        )
                    }) {
                        return Err(DataFusionError::NotImplemented(
                            "a NOT IN or outer nested-loop join whose result is hash-joined \
                             with distributed tables"
                                .into(),
                        ));
                    }
                    let one: Arc<dyn ExecutionPlan> =
                        Arc::new(CoalescePartitionsExec::new(new_children[i].clone()));
                    new_children[i] = self.gather(one)?;
                }
            }
        }

        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            let plan = replace_children_if_necessary(plan.clone(), new_children)?;
            if !located[0] {
                let hashed = matches!(repartition.partitioning(), Partitioning::Hash(_, _));
                return Ok((plan, false, hashed || local_hash[0]));
            }
            return Ok((self.exchange(plan)?, true, false));
        }

        let out_partitions = plan.output_partitioning().partition_count();
        let single: Vec<bool> = plan
            .input_distribution_requirements()
            .into_per_child()
            .iter()
            .map(|d| matches!(d, Distribution::SinglePartition))
            .collect();
        let union = plan.is::<UnionExec>();
        // A nested-loop join that emits unmatched build rows, and a null-aware anti join
        // (NOT IN: one NULL anywhere on the probe side empties the result), must see every
        // probe row in one process: they run where all their inputs are gathered.
        let gather_all = plan
            .downcast_ref::<NestedLoopJoinExec>()
            .is_some_and(|j| emits_unmatched_build_rows(*j.join_type()))
            || plan
                .downcast_ref::<HashJoinExec>()
                .is_some_and(|j| j.null_aware);
        for i in 0..new_children.len() {
            if !located[i] {
                continue;
            }
            let child = &new_children[i];
            let child_partitions = child.output_partitioning().partition_count();
            let needs_all = gather_all
                || single.get(i).copied().unwrap_or(false)
                || (!union && child_partitions != out_partitions);
            if needs_all && (gather_all || child_partitions > 1 || has_exchange(child)) {
                new_children[i] = self.gather(child.clone())?;
                located[i] = false;
            }
        }
        let plan = replace_children_if_necessary(plan, new_children)?;
        Ok((
            plan,
            located.iter().any(|l| *l),
            local_hash.iter().any(|l| *l),
        ))
    }

    /// Turns every repartition in `plan` into an exchange, wherever its input runs.
    fn cut_all_repartitions(
        &mut self,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let children: Vec<Arc<dyn ExecutionPlan>> = plan
            .children()
            .into_iter()
            .cloned()
            .map(|c| self.cut_all_repartitions(c))
            .collect::<Result<_>>()?;
        let plan = if children.is_empty() {
            plan
        } else {
            replace_children_if_necessary(plan, children)?
        };
        if plan.is::<RepartitionExec>() {
            self.exchange(plan)
        } else {
            Ok(plan)
        }
    }

    /// Makes `repartition` (a `RepartitionExec`) a redistribution stage and returns its
    /// reader.
    fn exchange(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(repartition) = plan.downcast_ref::<RepartitionExec>() else {
            return Err(DataFusionError::Internal(format!(
                "exchange of a {}",
                plan.name()
            )));
        };
        if repartition.preserve_order() {
            return Err(DataFusionError::NotImplemented(
                "an order-preserving exchange between compute nodes".into(),
            ));
        }
        let kind = match repartition.partitioning() {
            Partitioning::Hash(_, _) => ExchangeKind::Hash,
            Partitioning::RoundRobinBatch(_) => ExchangeKind::RoundRobin,
            other => {
                return Err(DataFusionError::NotImplemented(format!(
                    "exchange with partitioning {other}"
                )));
            }
        };
        // A join that must see all its probe rows in one process feeds the exchange from one
        // producer.
        let plan = if repartition.input().output_partitioning().partition_count() > 1
            && needs_one_process(repartition.input())
        {
            let one: Arc<dyn ExecutionPlan> =
                Arc::new(CoalescePartitionsExec::new(repartition.input().clone()));
            replace_children_if_necessary(plan.clone(), vec![one])?
        } else {
            plan.clone()
        };
        let Some(repartition) = plan.downcast_ref::<RepartitionExec>() else {
            return Err(DataFusionError::Internal(
                "exchange lost its repartition".into(),
            ));
        };
        let producers = repartition.input().output_partitioning().partition_count();
        let properties = plan.properties().clone();
        let schema = plan.schema();
        let (id, placement) = self.add_stage(plan, kind, producers);
        Ok(Arc::new(ExchangeReaderExec::new(
            self.query_id.clone(),
            id,
            ReadMode::Buckets,
            placement,
            schema,
            properties,
        )))
    }

    /// Makes `plan` a gather stage and returns its reader.
    fn gather(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = plan.output_partitioning().partition_count();
        let properties = plan.properties().clone();
        let schema = plan.schema();
        let (id, placement) = self.add_stage(plan, ExchangeKind::Gather, partitions);
        Ok(Arc::new(ExchangeReaderExec::new(
            self.query_id.clone(),
            id,
            ReadMode::Gather,
            placement,
            schema,
            properties,
        )))
    }

    fn add_stage(
        &mut self,
        plan: Arc<dyn ExecutionPlan>,
        kind: ExchangeKind,
        partitions: usize,
    ) -> (u32, Vec<String>) {
        let id = self.stages.len() as u32 + 1;
        let slices = self.slices.owners.len().max(1);
        let placement: Vec<String> = (0..partitions)
            .map(|p| self.slices.addr(p % slices).unwrap_or_default().to_string())
            .collect();
        self.stages.push(Stage {
            id,
            plan,
            kind,
            placement: placement.clone(),
            consume_once: kind != ExchangeKind::Gather,
        });
        (id, placement)
    }
}

/// Puts a `CooperativeExec` on every edge between operators of `plan`.
fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.is::<CooperativeExec>() || node.children().is_empty() {
            return Ok(Transformed::no(node));
        }
        let children: Vec<Arc<dyn ExecutionPlan>> = node
            .children()
            .into_iter()
            .map(|c| {
                if c.is::<CooperativeExec>() {
                    c.clone()
                } else {
                    Arc::new(CooperativeExec::new(c.clone())) as Arc<dyn ExecutionPlan>
                }
            })
            .collect();
        Ok(Transformed::yes(replace_children_if_necessary(
            node, children,
        )?))
    })
    .map(|t| t.data)
}

/// True when `plan` reads a redistributed exchange (whose buckets are read once).
fn has_exchange(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(r) = plan.downcast_ref::<ExchangeReaderExec>() {
        return r.mode() == ReadMode::Buckets;
    }
    plan.children().into_iter().any(has_exchange)
}

/// True when `plan` holds an operator that must see every probe row in one process: a
/// null-aware anti join (NOT IN) or a nested-loop join that emits unmatched build rows.
fn needs_one_process(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let here = plan
        .downcast_ref::<NestedLoopJoinExec>()
        .is_some_and(|j| emits_unmatched_build_rows(*j.join_type()))
        || plan
            .downcast_ref::<HashJoinExec>()
            .is_some_and(|j| j.null_aware);
    here || plan.children().into_iter().any(needs_one_process)
}

fn collect_readers(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<u32>) {
    if let Some(r) = plan.downcast_ref::<ExchangeReaderExec>() {
        out.push(r.stage_id());
    }
    // A recursive query runs its recursive term again and again: what it reads is kept.
    if plan.name() == "RecursiveQueryExec" {
        return;
    }
    for c in plan.children() {
        collect_readers(c, out);
    }
}
