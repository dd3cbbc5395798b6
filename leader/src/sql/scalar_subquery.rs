//! Correlated scalar subqueries as PostgreSQL answers them, in forms DataFusion can
//! decorrelate. Client tools' catalog queries are full of them, e.g. psql's `\d t`:
//! `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
//!   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef)`.
//!
//! Two rewrites, each giving the same value for every outer row:
//! * a conjunct of the subquery's WHERE that only reads the outer row (`a.atthasdef`) moves
//!   out: `CASE WHEN a.atthasdef THEN (SELECT ... WHERE <rest>) END`; an outer column the
//!   WHERE equates to an inner expression (`c.oid = a.attcollation`) is replaced by that
//!   expression in the other conjuncts (`a.attcollation <> t.typcollation` becomes
//!   `c.oid <> t.typcollation`);
//! * a subquery that does not aggregate, `(SELECT e FROM ...)`, becomes
//!   `(SELECT CASE WHEN count(*) > 1 THEN <fail 21000> ELSE first_value(e) END FROM ...)`:
//!   the same value for zero or one row, the same error for more.
//!
//! Anything else is left as written (DataFusion then plans it or refuses it).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use blueshift_common::functions::MORE_THAN_ONE_ROW;
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CaseWhen, Distinct, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, ObjectName, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};

/// Rewrites every scalar subquery of `s` (innermost first).
pub fn rewrite(s: &mut Statement) {
    let _ = VisitMut::visit(s, &mut ScalarSubqueries);
}

struct ScalarSubqueries;

impl VisitorMut for ScalarSubqueries {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(q) = expr {
            let hoisted = hoist_outer_conjuncts(q);
            aggregate_one_row(q);
            if let Some(cond) = hoisted {
                let sub = std::mem::replace(expr, Expr::Value(Value::Null.with_empty_span()));
                *expr = case_when(cond, sub, None);
            }
        }
        ControlFlow::Continue(())
    }
}

fn case_when(condition: Expr, result: Expr, else_result: Option<Expr>) -> Expr {
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen { condition, result }],
        else_result: else_result.map(Box::new),
    }
}

/// The names a subquery's FROM clause binds (aliases, else table names), lower-cased.
fn local_names(select: &Select) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => {
            let n = match alias {
                Some(a) => a.name.value.clone(),
                None => name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.clone())
                    .unwrap_or_default(),
            };
            names.insert(n.to_lowercase());
        }
        other => {
            // Derived tables, functions, ...: their alias, or an unnamed binding that makes
            // every unqualified name ambiguous (handled by the callers' conservatism).
            if let Some(a) = table_factor_alias(other) {
                names.insert(a.to_lowercase());
            }
        }
    };
    for twj in &select.from {
        add(&twj.relation);
        for j in &twj.joins {
            add(&j.relation);
        }
    }
    names
}

fn table_factor_alias(f: &TableFactor) -> Option<String> {
    match f {
        TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::NestedJoin { alias, .. } => alias.as_ref().map(|a| a.name.value.clone()),
        _ => None,
    }
}

/// What a conjunct reads.
#[derive(Default)]
struct Refs {
    /// `q.col` with `q` not bound by the subquery, as `q.col`.
    outer: Vec<String>,
    /// Anything bound (or maybe bound) by the subquery, or a nested subquery.
    inner: bool,
}

fn refs(e: &Expr, local: &HashSet<String>) -> Refs {
    struct R<'a> {
        local: &'a HashSet<String>,
        refs: Refs,
    }
    impl Visitor for R<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let q = parts[parts.len() - 2].value.to_lowercase();
                    if self.local.contains(&q) {
                        self.refs.inner = true;
                    } else {
                        self.refs.outer.push(key(parts));
                    }
                }
                Expr::Identifier(_)
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => self.refs.inner = true,
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut r = R {
        local,
        refs: Refs::default(),
    };
    let _ = e.visit(&mut r);
    r.refs
}

fn key(parts: &[Ident]) -> String {
    parts
        .iter()
        .map(|p| p.value.to_lowercase())
        .collect::<Vec<_>>()
        .join(".")
}

fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

fn and_all(mut es: Vec<Expr>) -> Option<Expr> {
    let first = if es.is_empty() {
        return None;
    } else {
        es.remove(0)
    };
    Some(es.into_iter().fold(first, |acc, e| Expr::BinaryOp {
        left: Box::new(acc),
        op: BinaryOperator::And,
        right: Box::new(Expr::Nested(Box::new(e))),
    }))
}

/// Moves the WHERE conjuncts that read only the outer row out of the subquery (returned,
/// AND-ed) and rewrites outer columns equated to inner expressions.
fn hoist_outer_conjuncts(q: &mut Query) -> Option<Expr> {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    let selection = select.selection.take()?;
    let local = local_names(select);
    if local.is_empty() {
        select.selection = Some(selection);
        return None;
    }
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);

    // outer column -> the inner expression the WHERE equates it to
    let mut equal: HashMap<String, Expr> = HashMap::new();
    for c in &parts {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            for (o, i) in [(left, right), (right, left)] {
                if let Expr::CompoundIdentifier(p) = o.as_ref() {
                    let r = refs(o, &local);
                    let ri = refs(i, &local);
                    if !r.inner && ri.outer.is_empty() && ri.inner {
                        equal.entry(key(p)).or_insert_with(|| i.as_ref().clone());
                    }
                }
            }
        }
    }

    let mut hoisted = Vec::new();
    let mut kept = Vec::new();
    for mut c in parts {
        let r = refs(&c, &local);
        if !r.inner && !r.outer.is_empty() {
            hoisted.push(c);
            continue;
        }
        let is_key_equality = matches!(&c, Expr::BinaryOp { op: BinaryOperator::Eq, left, right }
            if [left, right].iter().any(|s| matches!(s.as_ref(), Expr::CompoundIdentifier(p) if equal.contains_key(&key(p)))));
        if r.inner
            && !r.outer.is_empty()
            && !is_key_equality
            && r.outer.iter().all(|o| equal.contains_key(o))
        {
            substitute(&mut c, &equal, &local);
        }
        kept.push(c);
    }
    select.selection = and_all(kept);
    and_all(hoisted)
}

fn substitute(e: &mut Expr, equal: &HashMap<String, Expr>, local: &HashSet<String>) {
    struct S<'a> {
        equal: &'a HashMap<String, Expr>,
        local: &'a HashSet<String>,
    }
    impl VisitorMut for S<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() >= 2
                && !self
                    .local
                    .contains(&parts[parts.len() - 2].value.to_lowercase())
                && let Some(inner) = self.equal.get(&key(parts))
            {
                *e = Expr::Nested(Box::new(inner.clone()));
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(e, &mut S { equal, local });
}

/// Aggregates which make a subquery's one result row certain (the subquery is left alone).
const AGGREGATES: [&str; 12] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "listagg",
    "median",
];

fn call(name: &str, args: Vec<FunctionArgExpr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(FunctionArg::Unnamed).collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn aggregate_one_row(q: &mut Query) {
    if q.limit_clause.is_some() || q.fetch.is_some() || q.order_by.is_some() || q.with.is_some() {
        return;
    }
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let no_grouping =
        matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if !no_grouping
        || select.having.is_some()
        || select
            .distinct
            .as_ref()
            .is_some_and(|d| !matches!(d, Distinct::All))
        || select.from.is_empty()
        || select.projection.len() != 1
    {
        return;
    }
    let (value, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return,
    };
    // Conservative: an aggregate anywhere inside leaves the subquery as written, which can
    // only refuse a query, never change an answer.
    if calls_aggregate(&value, true) {
        return;
    }
    let more_than_one = Expr::BinaryOp {
        left: Box::new(call("count", vec![FunctionArgExpr::Wildcard])),
        op: BinaryOperator::Gt,
        right: Box::new(Expr::Value(
            Value::Number("1".to_string(), false).with_empty_span(),
        )),
    };
    // The column keeps the name PostgreSQL gives it.
    let alias = alias.or_else(|| match &value {
        Expr::Identifier(i) => Some(i.clone()),
        Expr::CompoundIdentifier(p) => p.last().cloned(),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).cloned(),
        _ => None,
    });
    let checked = case_when(
        more_than_one,
        call(MORE_THAN_ONE_ROW, vec![]),
        Some(call("first_value", vec![FunctionArgExpr::Expr(value)])),
    );
    select.projection[0] = match alias {
        Some(alias) => SelectItem::ExprWithAlias {
            expr: checked,
            alias,
        },
        None => SelectItem::UnnamedExpr(checked),
    };
}

/// Whether `e` calls an aggregate; with `in_subqueries`, inside nested subqueries too.
pub fn calls_aggregate(e: &Expr, in_subqueries: bool) -> bool {
    struct Find {
        found: bool,
        in_subqueries: bool,
        depth: usize,
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e
                && f.over.is_none()
                && (self.in_subqueries || self.depth == 0)
                && let Some(name) = f.name.0.last().and_then(|p| p.as_ident())
                && AGGREGATES.contains(&name.value.to_ascii_lowercase().as_str())
            {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find {
        found: false,
        in_subqueries,
        depth: 0,
    };
    let _ = e.visit(&mut f);
    f.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(&mut s);
        s.to_string()
    }

    #[test]
    fn outer_only_conjuncts_move_out_and_equated_columns_are_substituted() {
        let sql = rewritten(
            "SELECT (SELECT c.collname FROM pg_collation c, pg_type t \
             WHERE c.oid = a.attcollation AND t.oid = a.atttypid \
             AND a.attcollation <> t.typcollation AND a.atthasdef) FROM pg_attribute a",
        );
        assert!(sql.contains("CASE WHEN a.atthasdef THEN (SELECT"), "{sql}");
        assert!(sql.contains("(c.oid) <> t.typcollation"), "{sql}");
        assert!(sql.contains("c.oid = a.attcollation"), "{sql}");
        assert!(
            sql.contains("count(*) > 1 THEN blueshift_subquery_more_than_one_row()"),
            "{sql}"
        );
        assert!(
            sql.contains("ELSE first_value(c.collname) END AS collname"),
            "{sql}"
        );
    }

    #[test]
    fn aggregating_and_limited_subqueries_are_left_alone() {
        for sql in [
            "SELECT (SELECT max(x) FROM t WHERE t.k = o.k) FROM o",
            "SELECT (SELECT x FROM t WHERE t.k = o.k LIMIT 1) FROM o",
            "SELECT (SELECT coalesce((SELECT count(*) FROM u), 0) FROM t WHERE t.k = o.k) FROM o",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
