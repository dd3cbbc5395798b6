//! A physical optimizer rule that fixes the mode of hash joins for a cluster; it runs right
//! after DataFusion's join selection, which chose between a broadcast (`CollectLeft`) and a
//! partitioned join as if every partition ran in one process. A broadcast becomes a
//! partitioned join when:
//!
//! * both inputs are already split over the slices by the slice hash of the join key (both
//!   tables `DISTKEY` on the join columns): every matching pair lives on the same slice and
//!   the cheapest plan moves nothing (Redshift's `DS_DIST_NONE`), while join selection
//!   would have broadcast any build side under its row threshold;
//! * the join must emit build-side rows that found no match (left outer, full, left semi /
//!   anti / mark joins): DataFusion tracks matches in the one shared build table of a
//!   process, and with the build side broadcast to several nodes each node would emit its
//!   own unmatched rows (wrong answers). Partitioned, each build row lives in one partition.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

#[derive(Debug, Default)]
pub struct DistributedJoinModes;

impl PhysicalOptimizerRule for DistributedJoinModes {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            // A null-aware anti join (NOT IN) needs to know about the whole probe side in one
            // place whatever its mode; the distributor keeps it in one process.
            if *join.partition_mode() != PartitionMode::CollectLeft
                || join.null_aware
                || !(collocated(join) || emits_unmatched_build_rows(*join.join_type()))
            {
                return Ok(Transformed::no(node));
            }
            let rebuilt = join
                .builder()
                .with_partition_mode(PartitionMode::Partitioned)
                .build_exec()?;
            Ok(Transformed::yes(rebuilt))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "blueshift_distributed_join_modes"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Both sides hash-distributed over the same number of slices, each on the join key that
/// pairs with the other side's.
fn collocated(join: &HashJoinExec) -> bool {
    let (Partitioning::Hash(left, nl), Partitioning::Hash(right, nr)) = (
        join.left().output_partitioning(),
        join.right().output_partitioning(),
    ) else {
        return false;
    };
    // With more keys the partitioned join would want both sides hashed on all of them,
    // which moves both; the broadcast is then the better plan.
    if nl != nr || left.len() != 1 || right.len() != 1 || join.on().len() != 1 {
        return false;
    }
    join.on()
        .iter()
        .any(|(l, r)| l.as_ref() == left[0].as_ref() && r.as_ref() == right[0].as_ref())
}

/// Join types whose output includes build-side (left) rows decided only once every probe row
/// was seen.
pub fn emits_unmatched_build_rows(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::Full
            | JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
    )
}
