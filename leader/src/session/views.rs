//! `CREATE [OR REPLACE] VIEW`: the query is planned now (a bound view must name existing
//! relations and its columns are recorded for catalog listings), then stored as SQL text.
//! A late-binding view (`WITH NO SCHEMA BINDING`) may name relations that do not exist yet
//! and records no dependencies. Views are planned again by every statement that reads them
//! ([`crate::planner::schemas`]).

use blueshift_common::error::sqlstate;
use blueshift_common::types::{ColumnDef, ColumnType, DEFAULT_VARCHAR_LEN};
use datafusion::logical_expr::LogicalPlan;

use super::{Executor, Outcome, command, current_user, search_path, tx};
use crate::catalog::{Command, ViewDef};
use crate::error::{Error, Result};
use crate::planner::query_context;
use crate::planner::schemas::named_relations;
use crate::sql::statement::Ast;
use crate::sql::views::CreateView;

impl Executor {
    pub(super) async fn create_view(&self, cv: &CreateView) -> Result<Outcome> {
        let leader = &self.leader;
        let snapshot = tx::snapshot(leader);
        let path = search_path();
        let schema = snapshot.creation_schema(&cv.name, &path)?;
        let access = self.access(&snapshot);
        access.require_schema(&schema, crate::catalog::acl::Privileges::CREATE)?;
        if cv.or_replace
            && let Some(existing) = snapshot.view_by_name(&schema, &cv.name.name)
        {
            access.require_owner(crate::catalog::Relation::View(existing))?;
        }
        let ast = Ast::Query(cv.query.clone());
        let (planned, named) = named_relations(async {
            crate::sql::guard::refuse_known_wrong_answers(&ast)?;
            let qc = query_context(leader)?;
            qc.logical_plan(&ast).await
        })
        .await;
        let (columns, depends_on) = match planned {
            Ok(plan) => {
                let columns = view_columns(&plan, &cv.columns)?;
                let depends_on = if cv.late_binding { vec![] } else { named };
                (columns, depends_on)
            }
            // A late-binding view may read what does not exist yet.
            Err(_) if cv.late_binding => (vec![], vec![]),
            Err(e) => return Err(e),
        };
        let view = ViewDef {
            id: leader.catalog.allocate_table_id().await?,
            schema,
            name: cv.name.name.clone(),
            owner: current_user(),
            query: cv.query.to_string(),
            column_names: cv.columns.clone(),
            columns,
            late_binding: cv.late_binding,
            depends_on,
        };
        tx::execute(leader, |_| {
            Ok(Command::CreateView {
                view: view.clone(),
                replace: cv.or_replace,
            })
        })
        .await?;
        Ok(command("CREATE VIEW"))
    }
}

/// The view's columns as its query gives them, renamed by `names`.
fn view_columns(plan: &LogicalPlan, names: &[String]) -> Result<Vec<ColumnDef>> {
    let fields = plan.schema().fields();
    if names.len() > fields.len() {
        return Err(Error::sql(
            sqlstate::SYNTAX_ERROR,
            format!(
                "CREATE VIEW specifies more column names ({}) than the query has columns ({})",
                names.len(),
                fields.len()
            ),
        ));
    }
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| f.name().clone());
        if columns.iter().any(|c| c.name == name) {
            return Err(Error::sql(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{name}\" specified more than once"),
            ));
        }
        // Listings show what a table could hold; other types show as varchar.
        let ty = ColumnType::from_arrow(f.data_type()).unwrap_or(ColumnType::Varchar {
            len: DEFAULT_VARCHAR_LEN,
        });
        columns.push(ColumnDef::new(name, ty, f.is_nullable()));
    }
    Ok(columns)
}
