//! What every leaf plan node of ours (scans, exchange readers, the distributed query root)
//! answers the same way: it has no children to replace.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;

/// `ExecutionPlan::with_new_children` for a leaf: itself, or an error if given children.
pub fn leaf_with_new_children(
    leaf: Arc<dyn ExecutionPlan>,
    children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if children.is_empty() {
        Ok(leaf)
    } else {
        Err(DataFusionError::Internal(format!(
            "{} has no children",
            leaf.name()
        )))
    }
}
