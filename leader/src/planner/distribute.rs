//! Cutting a partitioned physical plan into fragments. A subtree ships to the compute nodes
//! when every node in it keeps partition `i` a function of its inputs' partition `i` (so
//! partition `i` can run where slice `i` lives) and all its leaves are slice scans. The
//! cut therefore falls at every exchange (`RepartitionExec`), gather
//! (`CoalescePartitionsExec`, `SortPreservingMergeExec`) and single-partition requirement;
//! what stays above runs on the leader: the final aggregation, merge, and limit.

use std::sync::Arc;

use blueshift_common::scan::SliceScanExec;
use datafusion::error::Result;
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties};

use crate::cluster::SliceMap;
use crate::scheduler::{RemoteFragmentExec, SchedulerHandle};

pub struct Distributor {
    pub query_id: String,
    pub slices: SliceMap,
    pub scheduler: Arc<SchedulerHandle>,
    next_fragment: usize,
}

impl Distributor {
    pub fn new(query_id: String, slices: SliceMap, scheduler: Arc<SchedulerHandle>) -> Self {
        Self {
            query_id,
            slices,
            scheduler,
            next_fragment: 1,
        }
    }

    pub fn distribute(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if shippable(&plan) {
            let id = self.next_fragment;
            self.next_fragment += 1;
            return Ok(Arc::new(RemoteFragmentExec::try_new(
                id,
                plan,
                self.query_id.clone(),
                self.slices.clone(),
                self.scheduler.clone(),
            )?));
        }
        let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
        if children.is_empty() {
            return Ok(plan);
        }
        let new_children = children
            .into_iter()
            .map(|c| self.distribute(c))
            .collect::<Result<Vec<_>>>()?;
        datafusion::physical_plan::execution_plan::replace_children_if_necessary(plan, new_children)
    }
}

/// True when the whole subtree can run partition-by-partition on the compute nodes.
fn shippable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let children = plan.children();
    if children.is_empty() {
        return plan.is::<SliceScanExec>();
    }
    let n = plan.output_partitioning().partition_count();
    let partition_local = children
        .iter()
        .all(|c| c.output_partitioning().partition_count() == n)
        && plan
            .input_distribution_requirements()
            .into_per_child()
            .iter()
            .all(|d| !matches!(d, Distribution::SinglePartition));
    partition_local
        && !plan.is::<datafusion::physical_plan::repartition::RepartitionExec>()
        && children.into_iter().all(shippable)
}
