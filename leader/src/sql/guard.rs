//! Queries the engine underneath would answer wrongly, refused up front with SQLSTATE 0A000:
//! an error is better than a wrong answer. Each entry names the DataFusion behaviour it
//! guards against; drop it when DataFusion is fixed (the `.slt` records pin the right answer).
//!
//! * `EXCEPT ALL`: DataFusion 55 plans it as an anti join, so rows of the left input that
//!   also occur on the right vanish entirely instead of once per match
//!   (`{1,1,2,3} EXCEPT ALL {1,3,4}` gives `{2}`, PostgreSQL `{1,2}`).

use std::ops::ControlFlow;

use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::ast::{
    Query, SetExpr, SetOperator, SetQuantifier, Statement, Visit, Visitor,
};

use crate::error::{Error, Result};

/// Fails for a statement Blueshift knows it would answer wrongly.
pub fn refuse_known_wrong_answers(statement: &Statement) -> Result<()> {
    match statement.visit(&mut Guard) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Guard;

impl Visitor for Guard {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        check_set_expr(&query.body)
    }
}

fn check_set_expr(set: &SetExpr) -> ControlFlow<Error> {
    if let SetExpr::SetOperation {
        op,
        set_quantifier,
        left,
        right,
    } = set
    {
        if matches!(op, SetOperator::Except | SetOperator::Minus)
            && matches!(set_quantifier, SetQuantifier::All)
        {
            return ControlFlow::Break(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "EXCEPT ALL is not supported yet (use EXCEPT, or NOT EXISTS with a row count)",
            ));
        }
        check_set_expr(left)?;
        check_set_expr(right)?;
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse_known_wrong_answers(sql: &str) -> Result<()> {
        match crate::sql::statement::parse(sql) {
            Ok(parsed) => match parsed.first().map(|p| &p.statement) {
                Some(
                    crate::sql::statement::Statement::Query(s)
                    | crate::sql::statement::Statement::Insert(s),
                ) => super::refuse_known_wrong_answers(s),
                _ => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    #[test]
    fn except_all_is_refused_anywhere_in_a_statement() {
        for sql in [
            "select 1 except all select 2",
            "select * from (select a from t except all select b from u) x",
            "insert into t select a from t except all select b from u",
            "select 1 union select 2 except all select 3",
        ] {
            let err = refuse_known_wrong_answers(sql).expect_err(sql);
            assert_eq!(err.sqlstate(), "0A000", "{sql}");
        }
        for sql in [
            "select 1 except select 2",
            "select 1 union all select 2",
            "select 1 intersect all select 1",
            "not sql at all",
        ] {
            refuse_known_wrong_answers(sql).expect(sql);
        }
    }
}
