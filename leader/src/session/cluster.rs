//! `ALTER CLUSTER REMOVE REPLICA n`: superusers only, outside transaction blocks (a change
//! of the raft group cannot be rolled back).

use blueshift_common::error::sqlstate;

use super::{Executor, Outcome, command, tx};
use crate::error::{Error, Result};
use crate::sql::cluster::ClusterStatement;

impl Executor {
    pub(super) async fn cluster_statement(&self, stmt: &ClusterStatement) -> Result<Outcome> {
        let me = super::current_user();
        if !self.leader.is_superuser(&me) {
            return Err(Error::sql(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "permission denied: only superusers may change the leader replicas",
            ));
        }
        if tx::in_block() {
            return Err(Error::sql(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "ALTER CLUSTER cannot run inside a transaction block",
            ));
        }
        match stmt {
            ClusterStatement::RemoveReplica(id) => {
                self.leader.catalog.remove_replica(*id).await?;
                Ok(command("ALTER CLUSTER"))
            }
        }
    }
}
