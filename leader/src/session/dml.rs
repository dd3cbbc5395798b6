//! Changing rows: `DELETE [FROM] t [USING ...] [WHERE ...]`, `UPDATE t SET ... [FROM ...]
//! [WHERE ...]`, `MERGE INTO t USING s ON ... WHEN [NOT] MATCHED ...`, `TRUNCATE [TABLE] t,
//! ...`.
//!
//! Segments are immutable, so a statement that changes rows rewrites the segments that hold
//! them, in three steps, all planned by DataFusion and run on the compute nodes like any
//! query, at the one catalog version the statement pinned:
//!
//! 1. *Which segments*: `SELECT __blueshift_segment, count(*) FROM <target and the other
//!    tables> WHERE <condition> GROUP BY 1`. The target's scan exposes the hidden
//!    `__blueshift_segment` column (each row's segment path) for this statement only; its
//!    zone maps prune as in any query.
//! 2. *Their new rows*: a query over those segments only that gives the rows they keep
//!    (DELETE) or the rows with the new values (UPDATE), routed by the distribution key into
//!    new segments, as a load does (an UPDATE of the key moves the row to its new slice).
//! 3. *One catalog command* ([`Command::ReplaceSegments`]) removes the old segments and adds
//!    the new ones. If another statement replaced one of the old segments first, the command
//!    fails with 40001 and this statement changes nothing.
//!
//! A reader that pinned an older catalog version keeps reading the old segments (GC keeps
//! them while it runs). A `DISTSTYLE ALL` table has a copy on every node: all of its
//! segments are rewritten from one copy.
//!
//! This module must not parse SQL: it gets sqlparser's AST from the front end and builds
//! the queries above as AST too.

use std::collections::{HashMap, HashSet};

use blueshift_common::error::sqlstate;
use blueshift_common::scan::SEGMENT_COLUMN;
use blueshift_common::types::{ColumnType, DistStyle, Segment, TableDef};
use datafusion::common::ParamValues;
use datafusion::physical_plan::execute_stream;
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, CastKind, DataType as SqlType, Expr, FromTable, GroupByExpr,
    Ident, MergeAction, MergeClauseKind, MergeInsertExpr, MergeInsertKind, ObjectName, SelectItem,
    SetExpr, TableFactor, TableWithJoins, UpdateTableFromKind, Value,
};
use datafusion::sql::sqlparser::tokenizer::Token;
use futures::StreamExt;

use super::{Executor, Outcome};
use crate::catalog::acl::Privileges;
use crate::catalog::{Command, SegmentChange};
use crate::error::{Error, Result};
use crate::planner::{QueryContext, query_context};
use crate::sql::statement::{Ast, parse_expr, parse_query, parse_stored_expr};

/// The table a DELETE or UPDATE changes, as the statement names it.
struct Target {
    def: TableDef,
    /// The name or alias the statement's expressions qualify the table's columns with.
    qualifier: Vec<Ident>,
    /// The table as written in the statement's FROM (with its alias).
    from: TableWithJoins,
}

fn unsupported(what: impl Into<String>) -> Error {
    Error::sql(sqlstate::FEATURE_NOT_SUPPORTED, what)
}

/// Where [`Executor::rewrite_table`] takes a column's values from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ColumnSource {
    /// The source table's column of that name.
    Column(String),
    /// A default expression (stored SQL text), the same for every row.
    Default(String),
    /// NULL (an identity column's NULLs get new values).
    Null,
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

impl Target {
    fn column(&self, name: &str) -> Expr {
        let mut parts = self.qualifier.clone();
        parts.push(quoted(name));
        Expr::CompoundIdentifier(parts)
    }

    fn segment(&self) -> Expr {
        self.column(SEGMENT_COLUMN)
    }

    /// `segment IN ('path', ...)`; `None` for a DISTSTYLE ALL table, whose every segment
    /// is rewritten.
    fn in_segments(&self, paths: &[String]) -> Option<Expr> {
        if self.def.dist == DistStyle::All {
            return None;
        }
        Some(Expr::InList {
            expr: Box::new(self.segment()),
            list: paths
                .iter()
                .map(|p| Expr::value(Value::SingleQuotedString(p.clone())))
                .collect(),
            negated: false,
        })
    }

    /// Every column of the table, in order, qualified.
    fn columns(&self) -> Vec<Expr> {
        self.def
            .columns
            .iter()
            .map(|c| self.column(&c.name))
            .collect()
    }
}

/// The segments a statement rewrites and how many rows they hold (for a DISTSTYLE ALL
/// table: all segments, and the rows of one copy).
struct Affected {
    remove: Vec<String>,
    rows: u64,
    /// Rows (of the target joined with the other tables) that met the condition.
    matches: u64,
}

fn and(a: Expr, b: Option<Expr>) -> Expr {
    match b {
        Some(b) => Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(a))),
            op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(b))),
        },
        None => a,
    }
}

fn and_all(parts: Vec<Expr>) -> Option<Expr> {
    let mut it = parts.into_iter();
    let first = it.next()?;
    Some(it.fold(first, |acc, e| and(acc, Some(e))))
}

/// `SELECT <projection> FROM <from> [WHERE <selection>] [GROUP BY <group_by>]`.
fn select(
    projection: Vec<Expr>,
    from: Vec<TableWithJoins>,
    selection: Option<Expr>,
    group_by: Vec<Expr>,
) -> Result<Ast> {
    // A template from tokens (`SELECT 1`), then its parts set.
    let mut query = parse_query(vec![
        Token::make_keyword("SELECT"),
        Token::Number("1".into(), false),
    ])?;
    let SetExpr::Select(s) = query.body.as_mut() else {
        return Err(Error::sql(sqlstate::INTERNAL_ERROR, "SELECT template"));
    };
    s.projection = projection
        .into_iter()
        .map(SelectItem::UnnamedExpr)
        .collect();
    s.from = from;
    s.selection = selection;
    if !group_by.is_empty() {
        s.group_by = GroupByExpr::Expressions(group_by, vec![]);
    }
    Ok(Ast::Query(query))
}

/// `NOT EXISTS (SELECT 1 FROM <from> WHERE <condition>)`.
fn not_exists(from: Vec<TableWithJoins>, condition: Option<Expr>) -> Result<Expr> {
    let Ast::Query(subquery) = select(
        vec![Expr::value(Value::Number("1".into(), false))],
        from,
        condition,
        vec![],
    )?
    else {
        return Err(Error::sql(sqlstate::INTERNAL_ERROR, "subquery template"));
    };
    Ok(Expr::Exists {
        subquery,
        negated: true,
    })
}

impl Executor {
    /// Resolves the table a DELETE / UPDATE changes and makes its scan expose the segment
    /// column in `qc`.
    fn dml_target(&self, qc: &QueryContext, from: &TableWithJoins, verb: &str) -> Result<Target> {
        if !from.joins.is_empty() {
            return Err(unsupported(format!(
                "{verb} takes one target table; put the other tables in {}",
                if verb == "DELETE" { "USING" } else { "FROM" }
            )));
        }
        let TableFactor::Table {
            name, alias, args, ..
        } = &from.relation
        else {
            return Err(unsupported(format!("{verb} needs a table name")));
        };
        if args.is_some() {
            return Err(unsupported(format!("{verb} of a table function")));
        }
        let table = crate::sql::names::RelationName::parse(name)?;
        let path = super::search_path();
        if let Some(crate::catalog::Relation::View(_)) = qc.catalog.relation(&table, &path) {
            return Err(Error::sql(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("cannot {verb} view \"{table}\": views are read-only"),
            ));
        }
        let Some(def) = qc.catalog.table(&table, &path).ok().cloned() else {
            // A name DataFusion knows but the catalog does not: a system table or view.
            let known = [
                name.to_string(),
                format!("pg_catalog.{}", table.name),
                format!("information_schema.{}", table.name),
            ]
            .iter()
            .any(|n| qc.ctx.table_exist(n.as_str()).unwrap_or(false));
            return Err(if known {
                Error::sql(
                    sqlstate::WRONG_OBJECT_TYPE,
                    format!("cannot {verb} a system table or view: \"{table}\""),
                )
            } else {
                qc.catalog.missing(&table)
            });
        };
        let qualifier = match alias {
            Some(a) => vec![a.name.clone()],
            None => name
                .0
                .iter()
                .filter_map(|p| p.as_ident().cloned())
                .collect(),
        };
        qc.expose_segments(&def)?;
        Ok(Target {
            def,
            qualifier,
            from: from.clone(),
        })
    }

    /// 42501 unless the user holds `needs` on the target (and SELECT when the statement
    /// reads its rows).
    fn require_target(
        &self,
        qc: &QueryContext,
        target: &Target,
        needs: Privileges,
        reads: bool,
    ) -> Result<()> {
        self.require_write(&qc.catalog, &target.def, needs)?;
        let access = self.access(&qc.catalog);
        if reads
            && !access.has_on_columns(
                crate::catalog::Relation::Table(&target.def),
                Privileges::SELECT,
                &[],
            )
        {
            return Err(crate::privileges::denied("relation", &target.def.name));
        }
        Ok(())
    }

    /// Step 1: the segments with rows that meet `condition` (over the target and `others`).
    async fn affected(
        &self,
        qc: &QueryContext,
        target: &Target,
        others: &[TableWithJoins],
        condition: Option<Expr>,
        params: &Option<ParamValues>,
    ) -> Result<Affected> {
        let count = parse_expr(vec![
            Token::make_word("count", None),
            Token::LParen,
            Token::Mul,
            Token::RParen,
        ])?;
        let mut from = vec![target.from.clone()];
        from.extend(others.iter().cloned());
        let query = select(
            vec![target.segment(), count],
            from,
            condition,
            vec![target.segment()],
        )?;
        let batches = self.collect(qc, &query, params).await?;
        let mut found: HashMap<String, u64> = HashMap::new();
        for batch in &batches {
            let paths = arrow::array::cast::as_string_array(batch.column(0));
            let counts = batch
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "count(*) is not Int64"))?;
            for i in 0..batch.num_rows() {
                found.insert(paths.value(i).to_string(), counts.value(i) as u64);
            }
        }
        let matches = found.values().sum();
        let segments: Vec<&Segment> = target.def.segments.values().flatten().collect();
        if target.def.dist == DistStyle::All {
            let copy = target
                .def
                .segments_by_slice(qc.catalog.slices)
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            return Ok(Affected {
                remove: if found.is_empty() {
                    vec![]
                } else {
                    segments.iter().map(|s| s.path.clone()).collect()
                },
                rows: copy.iter().map(|s| s.rows).sum(),
                matches,
            });
        }
        let mut paths: Vec<String> = found.into_keys().collect();
        paths.sort();
        let wanted: HashSet<&String> = paths.iter().collect();
        let rows = segments
            .iter()
            .filter(|s| wanted.contains(&s.path))
            .map(|s| s.rows)
            .sum();
        Ok(Affected {
            remove: paths,
            rows,
            matches,
        })
    }

    /// Runs a query to the end on the cluster.
    async fn collect(
        &self,
        qc: &QueryContext,
        query: &Ast,
        params: &Option<ParamValues>,
    ) -> Result<Vec<arrow::array::RecordBatch>> {
        let qc = qc.next_query();
        let plan = self.plan_query(&qc, query, params.clone()).await?;
        let mut stream = execute_stream(plan, qc.ctx.task_ctx())?;
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
        Ok(out)
    }

    /// Step 2: routes the rows of `queries` (each giving the table's columns in order) into
    /// new segments; returns them and the row count of each query.
    async fn rewrite(
        &self,
        qc: &QueryContext,
        def: &TableDef,
        queries: &[Ast],
        params: &Option<ParamValues>,
    ) -> Result<(Vec<Segment>, Vec<u64>)> {
        let mut router = self.router(def, qc.catalog.slices)?;
        let mut counts = Vec::with_capacity(queries.len());
        for query in queries {
            let before = router.rows();
            let qc = qc.next_query();
            let plan = self.plan_query(&qc, query, params.clone()).await?;
            let stream = execute_stream(plan, qc.ctx.task_ctx())?;
            super::route_rows(&self.leader, &mut router, def, stream, "changed row").await?;
            counts.push(router.rows() - before);
        }
        Ok((router.finish().await?, counts))
    }

    /// Rewrites all of `from`'s rows into new segments of `into` (not committed): column
    /// `i` of `into` takes its values from `sources[i]` (cast to its type).
    /// `ALTER TABLE ... RENAME COLUMN` (the segments name their columns), `ADD COLUMN ...
    /// DEFAULT` and `ALTER TABLE ... APPEND FROM` between tables of different layouts use it.
    pub(super) async fn rewrite_table(
        &self,
        qc: &QueryContext,
        from: &TableDef,
        into: &TableDef,
        sources: &[ColumnSource],
    ) -> Result<(Vec<Segment>, u64)> {
        let mut template = parse_query(vec![
            Token::make_keyword("SELECT"),
            Token::Number("1".into(), false),
            Token::make_keyword("FROM"),
            Token::make_word(&from.schema, Some('"')),
            Token::Period,
            Token::make_word(&from.name, Some('"')),
        ])?;
        let SetExpr::Select(s) = template.body.as_mut() else {
            return Err(Error::sql(sqlstate::INTERNAL_ERROR, "SELECT template"));
        };
        let tables = std::mem::take(&mut s.from);
        let projection = into
            .columns
            .iter()
            .zip(sources)
            .map(|(c, source)| {
                let value = match source {
                    ColumnSource::Column(name) => Expr::Identifier(quoted(name)),
                    ColumnSource::Default(text) => parse_stored_expr(text)?,
                    ColumnSource::Null => Expr::value(Value::Null),
                };
                Ok(cast(value, &c.ty))
            })
            .collect::<Result<Vec<_>>>()?;
        let query = select(projection, tables, None, vec![])?;
        let (segments, counts) = self.rewrite(qc, into, &[query], &None).await?;
        Ok((segments, counts.iter().sum()))
    }

    /// Step 3: swaps the segments in one catalog command.
    async fn replace(&self, def: &TableDef, remove: Vec<String>, add: Vec<Segment>) -> Result<()> {
        if remove.is_empty() && add.is_empty() {
            return Ok(());
        }
        super::tx::execute(&self.leader, |_| {
            Ok(Command::ReplaceSegments {
                changes: vec![SegmentChange {
                    table_id: def.id,
                    remove: remove.clone(),
                    add: add.clone(),
                }],
            })
        })
        .await?;
        Ok(())
    }

    pub(super) async fn delete(&self, ast: &Ast, params: Option<ParamValues>) -> Result<Outcome> {
        let Ast::Delete(d) = ast else {
            return Err(Error::sql(sqlstate::INTERNAL_ERROR, "not a DELETE"));
        };
        if !d.tables.is_empty() || d.returning.is_some() || !d.order_by.is_empty() {
            return Err(unsupported(
                "DELETE with RETURNING, ORDER BY or several target tables",
            ));
        }
        if d.limit.is_some() {
            return Err(unsupported("DELETE ... LIMIT"));
        }
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
        let [from] = from.as_slice() else {
            return Err(unsupported(
                "DELETE takes one target table; put the other tables in USING",
            ));
        };
        let _pin = self.leader.pins.pin();
        let qc = query_context(&self.leader)?;
        let target = self.dml_target(&qc, from, "DELETE")?;
        let using = d.using.clone().unwrap_or_default();
        // A condition reads the target's rows: that needs SELECT too (as in PostgreSQL).
        self.require_target(
            &qc,
            &target,
            Privileges::DELETE,
            d.selection.is_some() || !using.is_empty(),
        )?;
        let affected = self
            .affected(&qc, &target, &using, d.selection.clone(), &params)
            .await?;
        if affected.remove.is_empty() {
            return Ok(command_rows("DELETE", 0));
        }
        let keep = match (&d.selection, using.is_empty()) {
            // No condition: every row goes.
            (None, true) => None,
            (Some(condition), true) => Some(Expr::IsNotTrue(Box::new(Expr::Nested(Box::new(
                condition.clone(),
            ))))),
            (condition, false) => Some(not_exists(using.clone(), condition.clone())?),
        };
        let (add, kept) = match keep {
            None => (vec![], 0),
            Some(keep) => {
                let filter = and_all(
                    target
                        .in_segments(&affected.remove)
                        .into_iter()
                        .chain([keep])
                        .collect(),
                );
                let query = select(target.columns(), vec![target.from.clone()], filter, vec![])?;
                let (add, counts) = self.rewrite(&qc, &target.def, &[query], &params).await?;
                (add, counts[0])
            }
        };
        self.replace(&target.def, affected.remove, add).await?;
        Ok(command_rows("DELETE", affected.rows.saturating_sub(kept)))
    }

    pub(super) async fn update(&self, ast: &Ast, params: Option<ParamValues>) -> Result<Outcome> {
        let Ast::Update(u) = ast else {
            return Err(Error::sql(sqlstate::INTERNAL_ERROR, "not an UPDATE"));
        };
        if u.returning.is_some() || u.or.is_some() || !u.order_by.is_empty() || u.limit.is_some() {
            return Err(unsupported("UPDATE with RETURNING, ORDER BY, LIMIT or OR"));
        }
        let others: Vec<TableWithJoins> = match &u.from {
            None => vec![],
            Some(UpdateTableFromKind::AfterSet(t) | UpdateTableFromKind::BeforeSet(t)) => t.clone(),
        };
        let _pin = self.leader.pins.pin();
        let qc = query_context(&self.leader)?;
        let target = self.dml_target(&qc, &u.table, "UPDATE")?;
        self.require_target(
            &qc,
            &target,
            Privileges::UPDATE,
            u.selection.is_some() || !others.is_empty(),
        )?;
        let values = assignments(&target.def, &u.assignments)?;
        let affected = self
            .affected(&qc, &target, &others, u.selection.clone(), &params)
            .await?;
        if affected.remove.is_empty() {
            // Nothing to change; the new values are still planned, so that a value that
            // cannot be assigned is an error as in PostgreSQL.
            let mut from = vec![target.from.clone()];
            from.extend(others.iter().cloned());
            let values: Vec<Expr> = values.iter().flatten().cloned().collect();
            if !values.is_empty() {
                let check = select(values, from, u.selection.clone(), vec![])?;
                self.plan_query(&qc.next_query(), &check, params.clone())
                    .await?;
            }
            return Ok(command_rows("UPDATE", 0));
        }
        let in_segments = target.in_segments(&affected.remove);
        let new_value = |i: usize, guarded: bool| -> Expr {
            match (&values[i], &u.selection) {
                (None, _) => target.column(&target.def.columns[i].name),
                (Some(v), Some(condition)) if guarded => Expr::Case {
                    case_token: AttachedToken::empty(),
                    end_token: AttachedToken::empty(),
                    operand: None,
                    conditions: vec![datafusion::sql::sqlparser::ast::CaseWhen {
                        condition: Expr::IsTrue(Box::new(Expr::Nested(Box::new(
                            condition.clone(),
                        )))),
                        result: v.clone(),
                    }],
                    else_result: Some(Box::new(target.column(&target.def.columns[i].name))),
                },
                (Some(v), _) => v.clone(),
            }
        };
        let n = target.def.columns.len();
        let (add, updated) = if others.is_empty() {
            // One pass over the affected segments: each row with its new or old values.
            let query = select(
                (0..n).map(|i| new_value(i, true)).collect(),
                vec![target.from.clone()],
                in_segments,
                vec![],
            )?;
            let (add, _) = self.rewrite(&qc, &target.def, &[query], &params).await?;
            (add, affected.matches)
        } else {
            let (changed, unchanged) = joined_rewrite(
                &target,
                &others,
                u.selection.clone(),
                Some((0..n).map(|i| new_value(i, false)).collect()),
                in_segments,
            )?;
            let changed = changed
                .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "UPDATE without new values"))?;
            let (add, counts) = self
                .rewrite(&qc, &target.def, &[changed, unchanged], &params)
                .await?;
            // Each affected row is either matched once or unmatched; a row that two rows
            // of FROM matched would be written twice.
            if counts[0] + counts[1] != affected.rows {
                return Err(matched_twice("UPDATE ... FROM"));
            }
            (add, counts[0])
        };
        self.replace(&target.def, affected.remove, add).await?;
        Ok(command_rows("UPDATE", updated))
    }

    /// Redshift's `MERGE INTO target USING source ON cond WHEN MATCHED THEN UPDATE SET ... |
    /// DELETE WHEN NOT MATCHED THEN INSERT [(cols)] VALUES (...)` (each clause optional, at
    /// most one of each, PostgreSQL's `AND condition` on a clause accepted). A target row
    /// that two source rows match fails the statement (21000) and changes nothing.
    pub(super) async fn merge(&self, ast: &Ast, params: Option<ParamValues>) -> Result<Outcome> {
        let Ast::Merge(m) = ast else {
            return Err(Error::sql(sqlstate::INTERNAL_ERROR, "not a MERGE"));
        };
        if m.output.is_some() {
            return Err(unsupported("MERGE ... OUTPUT"));
        }
        let mut matched = None;
        let mut not_matched = None;
        for clause in &m.clauses {
            let slot = match clause.clause_kind {
                MergeClauseKind::Matched => &mut matched,
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => {
                    &mut not_matched
                }
                MergeClauseKind::NotMatchedBySource => {
                    return Err(unsupported("MERGE ... WHEN NOT MATCHED BY SOURCE"));
                }
            };
            if slot.replace(clause).is_some() {
                return Err(unsupported(
                    "MERGE with more than one WHEN MATCHED or WHEN NOT MATCHED clause",
                ));
            }
        }
        let _pin = self.leader.pins.pin();
        let qc = query_context(&self.leader)?;
        let target_from = TableWithJoins {
            relation: m.table.clone(),
            joins: vec![],
        };
        let target = self.dml_target(&qc, &target_from, "MERGE")?;
        let mut needs = Privileges::NONE;
        for clause in [&matched, &not_matched].into_iter().flatten() {
            needs = needs.with(match &clause.action {
                MergeAction::Update(_) => Privileges::UPDATE,
                MergeAction::Delete { .. } => Privileges::DELETE,
                MergeAction::Insert(_) => Privileges::INSERT,
            });
        }
        // ON reads the target's rows.
        self.require_target(&qc, &target, needs, true)?;
        let source = vec![TableWithJoins {
            relation: m.source.clone(),
            joins: vec![],
        }];
        let on = Expr::Nested(m.on.clone());
        let n = target.def.columns.len();

        // Matched rows: the ones the WHEN MATCHED clause acts on, and their segments.
        let mut remove = Vec::new();
        let mut changed_rows = 0;
        let mut queries = Vec::new();
        let mut check = None;
        let mut insert_at = None;
        if let Some(clause) = matched {
            let condition = and(on.clone(), clause.predicate.clone());
            let affected = self
                .affected(&qc, &target, &source, Some(condition.clone()), &params)
                .await?;
            if !affected.remove.is_empty() {
                let in_segments = target.in_segments(&affected.remove);
                let values = match &clause.action {
                    MergeAction::Update(update) => {
                        let values = assignments(&target.def, &update.assignments)?;
                        Some(
                            (0..n)
                                .map(|i| match &values[i] {
                                    Some(v) => v.clone(),
                                    None => target.column(&target.def.columns[i].name),
                                })
                                .collect(),
                        )
                    }
                    MergeAction::Delete { .. } => None,
                    MergeAction::Insert(_) => {
                        return Err(Error::sql(
                            sqlstate::SYNTAX_ERROR,
                            "WHEN MATCHED takes UPDATE or DELETE",
                        ));
                    }
                };
                let (changed, unchanged) =
                    joined_rewrite(&target, &source, Some(condition), values, in_segments)?;
                check = Some((changed.is_some(), affected.rows, affected.matches));
                queries.extend(changed);
                queries.push(unchanged);
                remove = affected.remove;
                changed_rows = affected.matches;
            }
        }
        // Source rows no target row matches: inserted.
        if let Some(clause) = not_matched {
            let MergeAction::Insert(insert) = &clause.action else {
                return Err(Error::sql(
                    sqlstate::SYNTAX_ERROR,
                    "WHEN NOT MATCHED takes INSERT",
                ));
            };
            let values = insert_values(&target.def, insert)?;
            let unmatched = not_exists(vec![target.from.clone()], Some(on.clone()))?;
            insert_at = Some(queries.len());
            queries.push(select(
                values,
                source.clone(),
                Some(and(unmatched, clause.predicate.clone())),
                vec![],
            )?);
        }
        if queries.is_empty() {
            return Ok(command_rows("MERGE", 0));
        }
        let (segments, counts) = self.rewrite(&qc, &target.def, &queries, &params).await?;
        if let Some((updates, rows, matches)) = check {
            // Every affected row is either changed once or kept; a row that two source
            // rows matched would count twice.
            let (changed, unchanged) = if updates {
                (counts[0], counts[1])
            } else {
                (matches, counts[0])
            };
            if changed + unchanged != rows {
                return Err(matched_twice("MERGE"));
            }
        }
        let inserted_rows = insert_at.map(|i| counts[i]).unwrap_or(0);
        self.replace(&target.def, remove, segments).await?;
        Ok(command_rows("MERGE", changed_rows + inserted_rows))
    }

    pub(super) async fn truncate(
        &self,
        names: &[crate::sql::names::RelationName],
    ) -> Result<Outcome> {
        let snapshot = super::tx::snapshot(&self.leader);
        let path = super::search_path();
        let mut changes = Vec::with_capacity(names.len());
        for name in names {
            let def = snapshot.table(name, &path)?;
            self.require_write(&snapshot, def, Privileges::TRUNCATE)?;
            changes.push(SegmentChange {
                table_id: def.id,
                remove: def.segment_paths(),
                add: vec![],
            });
        }
        super::tx::execute(&self.leader, |_| {
            Ok(Command::ReplaceSegments {
                changes: changes.clone(),
            })
        })
        .await?;
        Ok(super::command("TRUNCATE TABLE"))
    }
}

fn matched_twice(what: &str) -> Error {
    Error::sql(
        sqlstate::CARDINALITY_VIOLATION,
        format!(
            "{what} matched a row of the target table more than once: \
             each target row may be matched by one source row only"
        ),
    )
}

/// For a target row matched by rows of `others` under `condition`: the query of the
/// matched rows with their new `values` (none for a DELETE), and the query of the affected
/// target rows nothing matched (kept as they are).
fn joined_rewrite(
    target: &Target,
    others: &[TableWithJoins],
    condition: Option<Expr>,
    values: Option<Vec<Expr>>,
    in_segments: Option<Expr>,
) -> Result<(Option<Ast>, Ast)> {
    let changed = match values {
        Some(values) => {
            let mut from = vec![target.from.clone()];
            from.extend(others.iter().cloned());
            Some(select(
                values,
                from,
                and_all(
                    condition
                        .clone()
                        .into_iter()
                        .chain(in_segments.clone())
                        .collect(),
                ),
                vec![],
            )?)
        }
        None => None,
    };
    let unchanged = select(
        target.columns(),
        vec![target.from.clone()],
        and_all(
            in_segments
                .into_iter()
                .chain([not_exists(others.to_vec(), condition)?])
                .collect(),
        ),
        vec![],
    )?;
    Ok((changed, unchanged))
}

/// The row a MERGE inserts: each column's value (cast to its type), NULL where the INSERT
/// names no value for it.
fn insert_values(def: &TableDef, insert: &MergeInsertExpr) -> Result<Vec<Expr>> {
    let MergeInsertKind::Values(values) = &insert.kind else {
        return Err(unsupported("MERGE ... INSERT ROW"));
    };
    let [row] = values.rows.as_slice() else {
        return Err(Error::sql(
            sqlstate::SYNTAX_ERROR,
            "MERGE ... INSERT takes one VALUES row",
        ));
    };
    let row = &row.content;
    let columns: Vec<usize> = if insert.columns.is_empty() {
        (0..def.columns.len()).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| {
                let name =
                    c.0.last()
                        .and_then(|p| p.as_ident())
                        .map(crate::sql::names::normalize_ident)
                        .unwrap_or_default();
                def.column_index(&name).ok_or_else(|| {
                    Error::sql(
                        sqlstate::UNDEFINED_COLUMN,
                        format!(
                            "column \"{name}\" of relation \"{}\" does not exist",
                            def.name
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if columns.len() != row.len() {
        return Err(Error::sql(
            sqlstate::SYNTAX_ERROR,
            format!(
                "INSERT has {} target columns but {} values",
                columns.len(),
                row.len()
            ),
        ));
    }
    // Columns left out (or written DEFAULT) get their defaults; an identity column's NULL
    // gets a new value when the row is loaded.
    let mut out: Vec<Expr> = (0..def.columns.len())
        .map(|i| Ok(cast(super::insert::default_of(def, i)?, &def.columns[i].ty)))
        .collect::<Result<_>>()?;
    for (i, value) in columns.into_iter().zip(row) {
        if super::insert::is_default_keyword(value) {
            continue;
        }
        if def.columns[i].identity.is_some_and(|id| !id.by_default) {
            return Err(super::insert::identity_value_error(def, i));
        }
        out[i] = cast(value.clone(), &def.columns[i].ty);
    }
    Ok(out)
}

fn cast(value: Expr, ty: &ColumnType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::Nested(Box::new(value))),
        data_type: sql_type(ty),
        array: false,
        format: None,
    }
}

fn command_rows(tag: &str, rows: u64) -> Outcome {
    Outcome::Command {
        tag: tag.to_string(),
        rows: Some(rows),
    }
}

/// The SQL type a value assigned to a column of `ty` is cast to (as PostgreSQL's
/// assignment cast; lengths are checked when the row is written, as in a load).
fn sql_type(ty: &ColumnType) -> SqlType {
    use datafusion::sql::sqlparser::ast::{ExactNumberInfo, TimezoneInfo};
    match ty {
        ColumnType::SmallInt => SqlType::SmallInt(None),
        ColumnType::Integer => SqlType::Integer(None),
        ColumnType::BigInt => SqlType::BigInt(None),
        ColumnType::Decimal { precision, scale } => SqlType::Decimal(
            ExactNumberInfo::PrecisionAndScale(u64::from(*precision), i64::from(*scale)),
        ),
        ColumnType::Real => SqlType::Real,
        ColumnType::Double => SqlType::DoublePrecision,
        ColumnType::Boolean => SqlType::Boolean,
        ColumnType::Char { .. } | ColumnType::Varchar { .. } => SqlType::Varchar(None),
        ColumnType::Date => SqlType::Date,
        ColumnType::Timestamp => SqlType::Timestamp(None, TimezoneInfo::None),
        ColumnType::TimestampTz => SqlType::Timestamp(None, TimezoneInfo::WithTimeZone),
    }
}

/// The new value of each column (`None`: unchanged) from `SET col = expr, ...`, cast to
/// the column's type.
fn assignments(def: &TableDef, assignments: &[Assignment]) -> Result<Vec<Option<Expr>>> {
    let mut values = vec![None; def.columns.len()];
    for a in assignments {
        let names: Vec<&ObjectName> = match &a.target {
            AssignmentTarget::ColumnName(n) => vec![n],
            AssignmentTarget::Tuple(_) => {
                return Err(unsupported("UPDATE ... SET (a, b) = (...)"));
            }
        };
        for name in names {
            let column = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(crate::sql::names::normalize_ident)
                .ok_or_else(|| Error::sql(sqlstate::SYNTAX_ERROR, "SET needs a column name"))?;
            let i = def.column_index(&column).ok_or_else(|| {
                Error::sql(
                    sqlstate::UNDEFINED_COLUMN,
                    format!(
                        "column \"{column}\" of relation \"{}\" does not exist",
                        def.name
                    ),
                )
            })?;
            let value = if super::insert::is_default_keyword(&a.value) {
                // SET c = DEFAULT: the column's default; an identity column keeps its value
                // (Redshift does not renumber rows).
                if def.columns[i].identity.is_some() {
                    continue;
                }
                super::insert::default_of(def, i)?
            } else {
                if def.columns[i].identity.is_some_and(|id| !id.by_default) {
                    return Err(super::insert::identity_value_error(def, i));
                }
                a.value.clone()
            };
            if values[i].replace(cast(value, &def.columns[i].ty)).is_some() {
                return Err(Error::sql(
                    sqlstate::SYNTAX_ERROR,
                    format!("multiple assignments to same column \"{column}\""),
                ));
            }
        }
    }
    Ok(values)
}
