//! Statements about the cluster itself (Blueshift's own; Redshift has a single leader node):
//!
//! ```text
//! ALTER CLUSTER REMOVE REPLICA n
//! ```
//!
//! removes leader replica `n` from the raft group of leader replicas. Replicas are added by
//! starting them with `blueshift leader --join` (they ask the group themselves).

use datafusion::sql::sqlparser::tokenizer::Token;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};
use crate::sql::keyword;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterStatement {
    RemoveReplica(u64),
}

/// Parses `ALTER CLUSTER ...` from its significant tokens.
pub fn parse_cluster_statement(t: &[Token]) -> Result<ClusterStatement> {
    let kw = |i: usize| t.get(i).and_then(keyword).unwrap_or_default();
    let usage = || {
        Error::sql(
            sqlstate::SYNTAX_ERROR,
            "syntax error: expected ALTER CLUSTER REMOVE REPLICA <replica id>",
        )
    };
    if kw(0) != "ALTER" || kw(1) != "CLUSTER" || kw(2) != "REMOVE" || kw(3) != "REPLICA" {
        return Err(usage());
    }
    let id = match t.get(4) {
        Some(Token::Number(n, _)) => {
            n.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                Error::sql(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("a leader replica id is a number > 0, not {n}"),
                )
            })?
        }
        _ => return Err(usage()),
    };
    if t.len() > 5 {
        return Err(usage());
    }
    Ok(ClusterStatement::RemoveReplica(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::statement::{Statement, parse};

    fn one(sql: &str) -> Result<Statement> {
        parse(sql).map(|mut v| v.remove(0).statement)
    }

    #[test]
    fn remove_replica_parses_and_bad_forms_are_syntax_errors() {
        assert!(matches!(
            one("alter cluster remove replica 3;").unwrap(),
            Statement::Cluster(ClusterStatement::RemoveReplica(3))
        ));
        for bad in [
            "alter cluster remove replica",
            "alter cluster remove replica x",
            "alter cluster add replica 4",
            "alter cluster remove replica 3 now",
        ] {
            assert_eq!(one(bad).unwrap_err().sqlstate(), "42601", "{bad}");
        }
        assert_eq!(
            one("alter cluster remove replica 0")
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
    }
}
