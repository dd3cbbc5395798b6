//! PostgreSQL syntax that client tools send and DataFusion does not take as is, rewritten
//! into equivalent SQL before planning: `OPERATOR(pg_catalog.~)`, `COLLATE
//! pg_catalog.default`, `x = ANY('{a,b}')`, `'{1,2}'::int[]`, `'t'::regclass`,
//! schema-qualified function names (`pg_catalog.format_type`), unqualified `pg_class`,
//! `current_user` without parentheses, `SELECT n.oid, n.*`.
//!
//! Only rewrites that keep the meaning are used (from `datafusion-pg-catalog`'s rule set;
//! its whole-query substitutions and its "correlated subquery becomes NULL" rule are left
//! out). Where a rewrite would change an answer (a collation other than the default, an
//! array literal with quoted elements) the statement is refused with 0A000 instead.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType as SqlType, Expr, GroupByExpr, Ident, JoinOperator, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, Value, ValueWithSpan, Visit, VisitMut,
    Visitor, VisitorMut,
};
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation, RewritePgCatalogOperator,
    RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};

use crate::error::{Error, Result};
use blueshift_common::error::sqlstate;

/// Collations that are byte order here, so dropping the clause keeps the answer.
const BYTE_ORDER_COLLATIONS: [&str; 4] = ["default", "c", "posix", "ucs_basic"];

fn rules() -> &'static [Arc<dyn SqlStatementRewriteRule>] {
    static RULES: std::sync::OnceLock<Vec<Arc<dyn SqlStatementRewriteRule>>> =
        std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        vec![
            Arc::new(AliasDuplicatedProjectionRewrite),
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(FixArrayLiteral),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
            Arc::new(FixVersionColumnName),
        ]
    })
}

/// Applies the compatibility rewrites to a statement and plans it.
pub async fn logical_plan(
    state: &SessionState,
    statement: &Statement,
    empty_tables: &HashSet<String>,
) -> Result<LogicalPlan> {
    match plan_once(state, statement, empty_tables, false).await {
        // Redshift lets WHERE name a select-list alias (`n.nspname AS schema ... WHERE
        // schema = 'public'`) when no column has that name: only then is it rewritten.
        Err(e) if e.user_message().contains("No field named") => {
            match plan_once(state, statement, empty_tables, true).await {
                Ok(plan) => Ok(plan),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(undefined_relation(state, e)),
        ok => ok,
    }
}

/// DataFusion's "table 'dev.s.t' not found" as PostgreSQL says it: `schema "s" does not
/// exist` (3F000) when the schema is missing, else `relation "s.t" does not exist` (42P01),
/// the schema left out when the name was resolved in the default one.
fn undefined_relation(state: &SessionState, e: Error) -> Error {
    let message = e.user_message();
    let Some(name) = message
        .split_once("table '")
        .and_then(|(_, rest)| rest.split_once("' not found"))
        .map(|(name, _)| name.to_string())
    else {
        return e;
    };
    let parts: Vec<&str> = name.split('.').collect();
    let [catalog, schema, table] = parts[..] else {
        return e;
    };
    let schema_exists = state
        .catalog_list()
        .catalog(catalog)
        .is_some_and(|c| c.schema(schema).is_some());
    if !schema_exists {
        return Error::sql(
            sqlstate::INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
        );
    }
    let shown = if schema == state.config().options().catalog.default_schema {
        table.to_string()
    } else {
        format!("{schema}.{table}")
    };
    Error::sql(
        sqlstate::UNDEFINED_TABLE,
        format!("relation \"{shown}\" does not exist"),
    )
}

async fn plan_once(
    state: &SessionState,
    statement: &Statement,
    empty_tables: &HashSet<String>,
    lateral_aliases: bool,
) -> Result<LogicalPlan> {
    refuse_lossy(statement)?;
    let mut s = statement.clone();
    let _ = VisitMut::visit(&mut s, &mut QuantifiedSubqueries);
    let _ = VisitMut::visit(&mut s, &mut RedshiftForms { lateral_aliases });
    let _ = VisitMut::visit(&mut s, &mut PgColumnNames);
    for rule in rules() {
        s = rule.rewrite(s);
    }
    // Again: the rules turn a bare `current_schema` into a call.
    let _ = VisitMut::visit(&mut s, &mut PgColumnNames);
    let _ = VisitMut::visit(&mut s, &mut QualifyPgUser);
    let _ = VisitMut::visit(&mut s, &mut UnevaluatedSubqueries { empty_tables });
    crate::sql::scalar_subquery::rewrite(&mut s);
    Ok(state
        .statement_to_plan(DfStatement::Statement(Box::new(s)))
        .await?)
}

/// `x = ANY (subquery)` is `x IN (subquery)` and `x <> ALL (subquery)` is `x NOT IN
/// (subquery)`, NULLs included. Written so, the array rewrite (`= ANY(array)` becomes
/// `array_contains`) cannot take them for arrays.
struct QuantifiedSubqueries;

impl VisitorMut for QuantifiedSubqueries {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let (left, negated, subquery) = match e {
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => match right.as_ref() {
                Expr::Subquery(q) => (left.clone(), false, q.clone()),
                _ => return ControlFlow::Continue(()),
            },
            Expr::AllOp {
                left,
                compare_op: BinaryOperator::NotEq,
                right,
            } => match right.as_ref() {
                Expr::Subquery(q) => (left.clone(), true, q.clone()),
                _ => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        *e = Expr::InSubquery {
            expr: left,
            subquery,
            negated,
        };
        ControlFlow::Continue(())
    }
}

/// Redshift forms PostgreSQL does not take, written as PostgreSQL forms of the same meaning:
/// `(a, b) = (c, d)` as `a = c AND b = d`; a `1` or `0` used as a condition (`WHERE 1 AND
/// ...`) as true or false; the column types in a table function's alias (`f() AS cols(a
/// varchar)`) dropped (the function's own types stand); and, when asked, a WHERE that names
/// a select-list alias given the aliased expression.
struct RedshiftForms {
    lateral_aliases: bool,
}

fn as_condition(e: &mut Expr) {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        }) if n == "1" || n == "0" => {
            *e = Expr::Value(Value::Boolean(n == "1").with_empty_span());
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or,
            right,
        } => {
            as_condition(left);
            as_condition(right);
        }
        Expr::Nested(inner) => as_condition(inner),
        _ => {}
    }
}

impl VisitorMut for RedshiftForms {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq),
            right,
        } = e
            && let (Expr::Tuple(l), Expr::Tuple(r)) = (left.as_ref(), right.as_ref())
            && l.len() == r.len()
            && !l.is_empty()
        {
            let negate = *op == BinaryOperator::NotEq;
            let pairs: Vec<Expr> = l
                .iter()
                .zip(r)
                .map(|(a, b)| Expr::BinaryOp {
                    left: Box::new(a.clone()),
                    op: BinaryOperator::Eq,
                    right: Box::new(b.clone()),
                })
                .collect();
            let all = pairs
                .into_iter()
                .reduce(|acc, p| Expr::BinaryOp {
                    left: Box::new(acc),
                    op: BinaryOperator::And,
                    right: Box::new(p),
                })
                .map(|x| Expr::Nested(Box::new(x)));
            if let Some(all) = all {
                *e = if negate {
                    Expr::UnaryOp {
                        op: datafusion::sql::sqlparser::ast::UnaryOperator::Not,
                        expr: Box::new(all),
                    }
                } else {
                    all
                };
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            args: Some(_),
            alias: Some(alias),
            ..
        }
        | TableFactor::Function {
            alias: Some(alias), ..
        } = f
        {
            for c in &mut alias.columns {
                c.data_type = None;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        fn fix(body: &mut SetExpr, lateral: bool) {
            match body {
                SetExpr::Select(select) => {
                    if let Some(w) = select.selection.as_mut() {
                        as_condition(w);
                        if lateral {
                            let aliases: Vec<(String, Expr)> = select
                                .projection
                                .iter()
                                .filter_map(|p| match p {
                                    SelectItem::ExprWithAlias { expr, alias } => {
                                        Some((alias.value.to_lowercase(), expr.clone()))
                                    }
                                    _ => None,
                                })
                                .collect();
                            let _ = VisitMut::visit(w, &mut LateralAliases(&aliases));
                        }
                    }
                    if let Some(h) = select.having.as_mut() {
                        as_condition(h);
                    }
                }
                SetExpr::SetOperation { left, right, .. } => {
                    fix(left, lateral);
                    fix(right, lateral);
                }
                _ => {}
            }
        }
        fix(q.body.as_mut(), self.lateral_aliases);
        ControlFlow::Continue(())
    }
}

/// Unqualified names in a WHERE clause that are select-list aliases, replaced by the
/// aliased expressions (not inside subqueries, which have their own select lists).
struct LateralAliases<'a>(&'a [(String, Expr)]);

impl VisitorMut for LateralAliases<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(i) = e
            && let Some((_, aliased)) = self.0.iter().find(|(a, _)| *a == i.value.to_lowercase())
            && !matches!(aliased, Expr::Identifier(j) if j.value.eq_ignore_ascii_case(&i.value))
        {
            *e = Expr::Nested(Box::new(aliased.clone()));
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_query(&mut self, _q: &mut Query) -> ControlFlow<()> {
        ControlFlow::Break(())
    }
}

/// `pg_user` without a schema is `pg_catalog.pg_user` (pg_catalog is always on the search
/// path; the crate's rule knows only its own tables).
struct QualifyPgUser;

impl VisitorMut for QualifyPgUser {
    type Break = ();
    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = f
            && let [part] = name.0.as_slice()
            && part
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_user"))
        {
            name.0.insert(
                0,
                datafusion::sql::sqlparser::ast::ObjectNamePart::Identifier(Ident::new(
                    "pg_catalog",
                )),
            );
        }
        ControlFlow::Continue(())
    }
}

/// PostgreSQL names an unaliased select-list column after the function it calls (`count`,
/// `current_user`, `version`), the special name it is (`current_schema`), or the column a
/// cast converts (`x::int` is `x`); DataFusion after the whole expression (`count(*)`).
/// Such items get the PostgreSQL name as an alias, unless another item of the same select
/// list already has that name (DataFusion refuses duplicate names; PostgreSQL does not).
struct PgColumnNames;

impl VisitorMut for PgColumnNames {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        fn rename(body: &mut SetExpr) {
            match body {
                SetExpr::Select(select) => {
                    let names: Vec<Option<String>> = select
                        .projection
                        .iter()
                        .map(|item| match item {
                            SelectItem::UnnamedExpr(e) => pg_name(e),
                            _ => None,
                        })
                        .collect();
                    let taken: Vec<String> = select
                        .projection
                        .iter()
                        .filter_map(|item| match item {
                            SelectItem::ExprWithAlias { alias, .. } => {
                                Some(alias.value.to_lowercase())
                            }
                            SelectItem::UnnamedExpr(Expr::Identifier(i)) => {
                                Some(i.value.to_lowercase())
                            }
                            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => {
                                p.last().map(|i| i.value.to_lowercase())
                            }
                            _ => None,
                        })
                        .collect();
                    for (item, name) in select.projection.iter_mut().zip(&names) {
                        let Some(name) = name else { continue };
                        let clashes = names.iter().filter(|n| n.as_ref() == Some(name)).count() > 1
                            || taken.contains(&name.to_lowercase());
                        if clashes {
                            continue;
                        }
                        if let SelectItem::UnnamedExpr(e) = item {
                            *item = SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: Ident::with_quote('"', name.clone()),
                            };
                        }
                    }
                }
                SetExpr::SetOperation { left, .. } => rename(left),
                _ => {}
            }
        }
        rename(q.body.as_mut());
        ControlFlow::Continue(())
    }
}

/// The name PostgreSQL gives an unaliased select-list item, when it is not DataFusion's.
fn pg_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_lowercase()),
        Expr::Identifier(i)
            if i.quote_style.is_none()
                && matches!(
                    i.value.to_lowercase().as_str(),
                    "current_schema" | "current_user" | "session_user" | "current_catalog" | "user"
                ) =>
        {
            Some(i.value.to_lowercase())
        }
        Expr::Value(_) => Some("?column?".to_string()),
        Expr::Cast { expr, .. } => match expr.as_ref() {
            Expr::Identifier(i) => Some(i.value.clone()),
            Expr::CompoundIdentifier(p) => p.last().map(|i| i.value.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A `SELECT` (without aggregates) over a catalog table that never has rows returns no
/// rows whatever its select list and WHERE say, so neither is evaluated: psql's `\d` asks
/// `pg_policy` with `array(select ... where oid = any(pol.polroles))`, which DataFusion
/// cannot plan. The select list becomes NULLs under the same names and the WHERE `false`,
/// which cannot change the (empty) answer.
struct UnevaluatedSubqueries<'a> {
    empty_tables: &'a HashSet<String>,
}

impl VisitorMut for UnevaluatedSubqueries<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if self.set_expr(q.body.as_mut()) {
            // No rows to order (and the ORDER BY may name what the select list no longer has).
            q.order_by = None;
        }
        ControlFlow::Continue(())
    }
}

impl UnevaluatedSubqueries<'_> {
    /// Empties what yields no rows; whether all of `body` does.
    fn set_expr(&self, body: &mut SetExpr) -> bool {
        match body {
            SetExpr::Select(select) => self.select(select),
            SetExpr::SetOperation { left, right, .. } => {
                let l = self.set_expr(left);
                let r = self.set_expr(right);
                l && r
            }
            _ => false,
        }
    }

    fn is_empty_table(&self, f: &TableFactor) -> bool {
        let TableFactor::Table {
            name, args: None, ..
        } = f
        else {
            return false;
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .collect();
        match parts.as_slice() {
            [t] => self.empty_tables.contains(t),
            [s, t] => s == "pg_catalog" && self.empty_tables.contains(t),
            _ => false,
        }
    }

    /// Whether the FROM clause yields no rows: an always-empty table in a position that
    /// empties the whole clause (first of a join chain, or inner/cross joined).
    fn yields_no_rows(&self, select: &Select) -> bool {
        select.from.iter().any(|twj| {
            self.is_empty_table(&twj.relation)
                || twj.joins.iter().any(|j| {
                    matches!(
                        j.join_operator,
                        JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                    ) && self.is_empty_table(&j.relation)
                })
        })
    }

    fn select(&self, select: &mut Select) -> bool {
        let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if !self.yields_no_rows(select)
            || grouped
            || select.having.is_some()
            || select.projection.iter().any(|p| match p {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    crate::sql::scalar_subquery::calls_aggregate(e, false)
                }
                _ => false,
            })
        {
            return false;
        }
        // Not even the select list is evaluated: it becomes NULLs under the same names
        // (it may hold what DataFusion cannot plan, e.g. `'d' = any(stxkind)` on text).
        // Names stay unique, as DataFusion wants (no row carries them anyway).
        let mut seen = HashSet::new();
        for item in select.projection.iter_mut() {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e.clone(), None),
                SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
                _ => continue,
            };
            let mut alias = alias.unwrap_or_else(|| Ident::new(output_name(&e)));
            let base = alias.value.clone();
            let mut n = 1;
            while !seen.insert(alias.value.clone()) {
                alias = Ident::new(format!("{base}_{n}"));
                n += 1;
            }
            *item = SelectItem::ExprWithAlias {
                expr: Expr::Value(Value::Null.with_empty_span()),
                alias,
            };
        }
        // Nor is the WHERE clause (psql passes oids as text there: `'16386'`).
        select.selection = Some(Expr::Value(Value::Boolean(false).with_empty_span()));
        true
    }
}

/// The column name PostgreSQL gives an unaliased select-list expression.
fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(p) => p.last().map(|i| i.value.clone()).unwrap_or_default(),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.clone())
            .unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        _ => "?column?".to_string(),
    }
}

/// Writes each parameter `$i` whose type the client declared (`types[i-1]`) as
/// `CAST($i AS type)`.
pub fn with_parameter_types(statement: &mut Statement, types: &[Option<SqlType>]) {
    if types.iter().all(Option::is_none) {
        return;
    }
    struct Casts<'a>(&'a [Option<SqlType>]);
    impl VisitorMut for Casts<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(ValueWithSpan {
                value: Value::Placeholder(p),
                ..
            }) = e
                && let Some(i) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                && let Some(Some(data_type)) = self.0.get(i.wrapping_sub(1))
            {
                *e = Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(e.clone()),
                    data_type: data_type.clone(),
                    array: false,
                    format: None,
                };
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(statement, &mut Casts(types));
}

/// Refuses what the rewrites could only take by changing the answer.
fn refuse_lossy(s: &Statement) -> Result<()> {
    struct Check(Option<String>);
    impl Visitor for Check {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Collate { collation, .. } => {
                    let name = collation
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(|i| i.value.to_ascii_lowercase())
                        .unwrap_or_default();
                    if !BYTE_ORDER_COLLATIONS.contains(&name.as_str()) {
                        self.0 = Some(format!("collation \"{name}\" is not supported"));
                        return ControlFlow::Break(());
                    }
                }
                Expr::Cast {
                    kind: CastKind::DoubleColon,
                    expr,
                    data_type: SqlType::Array(_),
                    ..
                } => {
                    if let Expr::Value(ValueWithSpan {
                        value: Value::SingleQuotedString(lit),
                        ..
                    }) = expr.as_ref()
                        && lit
                            .trim()
                            .strip_prefix('{')
                            .is_some_and(|inner| inner.contains(['"', '\\', '{']))
                    {
                        self.0 = Some(format!(
                            "array literal '{lit}' with quoted or nested elements is not supported"
                        ));
                        return ControlFlow::Break(());
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut check = Check(None);
    let _ = s.visit(&mut check);
    match check.0 {
        Some(msg) => Err(Error::sql(sqlstate::FEATURE_NOT_SUPPORTED, msg)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn parse(sql: &str) -> Statement {
        let state = SessionContext::new().state();
        match state
            .sql_to_statement(sql, &datafusion::common::config::Dialect::PostgreSQL)
            .unwrap()
        {
            DfStatement::Statement(s) => *s,
            _ => panic!("not a SQL statement"),
        }
    }

    #[test]
    fn default_collation_and_simple_array_literals_pass() {
        refuse_lossy(&parse("select 'a' collate pg_catalog.default < 'b'")).unwrap();
        refuse_lossy(&parse("select 'a' collate \"C\" < 'b'")).unwrap();
        refuse_lossy(&parse("select '{1,2}'::int[]")).unwrap();
    }

    #[test]
    fn lossy_rewrites_are_refused() {
        for sql in [
            "select 'a' collate \"de_DE\" < 'b'",
            "select '{\"a,b\",c}'::text[]",
            "select '{{1,2},{3,4}}'::int[]",
        ] {
            let e = refuse_lossy(&parse(sql)).unwrap_err();
            assert_eq!(e.sqlstate(), "0A000", "{sql}");
        }
    }
}
