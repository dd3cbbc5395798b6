//! Who may do what: the one place a statement's access is decided, from the catalog's
//! owners, ACLs ([`crate::catalog::acl`]) and groups at the statement's pinned version.
//!
//! * Superusers hold every privilege; an object's owner holds every privilege on it (and
//!   alone may ALTER, DROP or GRANT it unless others were given GRANT OPTION).
//! * Everyone else holds what was granted to them, to a group they are in, or to PUBLIC.
//! * A query's reads are checked on its logical plan before it is optimised: every table
//!   and view it scans needs SELECT (a column-level grant covers the columns the scan
//!   reads), and USAGE on their schema. A view is read with its owner's rights: the
//!   relations inside it are checked for the view's owner, not for the user.
//! * Denials are SQLSTATE 42501 with Redshift's wording (`permission denied for relation
//!   t`, `permission denied for schema s`, `must be owner of relation t`).
//!
//! This module decides; it must not change the catalog.

use std::collections::HashSet;

use blueshift_common::error::sqlstate;
use blueshift_common::types::TableDef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;

use crate::catalog::CatalogState;
use crate::catalog::Relation;
use crate::catalog::acl::{AclObject, Grantee, Privileges};
use crate::error::{Error, Result};

/// One user's view of the catalog's privileges.
pub struct Access<'a> {
    state: &'a CatalogState,
    user: String,
    superuser: bool,
    /// The configured built-in users (superusers, see `LeaderState::users`).
    builtin: &'a [String],
}

pub fn denied(what: &str, name: &str) -> Error {
    Error::sql(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("permission denied for {what} {name}"),
    )
}

pub fn not_owner(what: &str, name: &str) -> Error {
    Error::sql(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("must be owner of {what} {name}"),
    )
}

impl<'a> Access<'a> {
    pub fn new(state: &'a CatalogState, builtin: &'a [String], user: &str) -> Self {
        let superuser =
            builtin.iter().any(|u| u == user) || state.users.get(user).is_some_and(|u| u.superuser);
        Access {
            state,
            user: user.to_string(),
            superuser,
            builtin,
        }
    }

    /// The same catalog seen by another user (a view's owner).
    pub fn as_user(&self, user: &str) -> Access<'a> {
        Access::new(self.state, self.builtin, user)
    }

    pub fn is_superuser(&self) -> bool {
        self.superuser
    }

    fn holds(&self, grantee: &Grantee) -> bool {
        match grantee {
            Grantee::Public => true,
            Grantee::User(u) => *u == self.user,
            Grantee::Group(g) => self
                .state
                .groups
                .get(g)
                .is_some_and(|g| g.members.contains(&self.user)),
        }
    }

    /// What the ACL of `object` gives this user: (privileges, of them grantable).
    pub fn granted(&self, object: &AclObject) -> (Privileges, Privileges) {
        let mut held = (Privileges::NONE, Privileges::NONE);
        if let Some(acl) = self.state.acls.iter().find(|a| a.object == *object) {
            for e in acl.entries.iter().filter(|e| self.holds(&e.grantee)) {
                held.0 = held.0.with(e.privileges);
                held.1 = held.1.with(e.grantable);
            }
        }
        held
    }

    fn owns(&self, owner: &str) -> bool {
        // A relation from before owners were recorded belongs to the built-in user.
        owner == self.user || (owner.is_empty() && self.builtin.contains(&self.user))
    }

    pub fn owns_relation(&self, rel: Relation<'_>) -> bool {
        self.superuser || self.owns(relation_owner(rel))
    }

    /// The privileges this user holds on a relation as a whole: (held, grantable).
    pub fn on_relation(&self, rel: Relation<'_>) -> (Privileges, Privileges) {
        if self.owns_relation(rel) {
            return (Privileges::TABLE_ALL, Privileges::TABLE_ALL);
        }
        self.granted(&AclObject::Relation(rel.id()))
    }

    /// Whether the user holds `p` on every one of `columns` of `rel` (by a relation-level
    /// grant, or column by column). No columns (`count(*)`): the relation or any column.
    pub fn has_on_columns(&self, rel: Relation<'_>, p: Privileges, columns: &[String]) -> bool {
        if self.on_relation(rel).0.contains(p) {
            return true;
        }
        let on_column = |c: &str| {
            self.granted(&AclObject::Column(rel.id(), c.to_string()))
                .0
                .contains(p)
        };
        if columns.is_empty() {
            return self.state.acls.iter().any(|a| {
                matches!(&a.object, AclObject::Column(id, _) if *id == rel.id())
                    && a.entries
                        .iter()
                        .any(|e| self.holds(&e.grantee) && e.privileges.contains(p))
            });
        }
        columns.iter().all(|c| on_column(c))
    }

    /// 42501 unless the user holds `p` on the whole relation.
    pub fn require_relation(&self, rel: Relation<'_>, p: Privileges) -> Result<()> {
        if self.on_relation(rel).0.contains(p) {
            Ok(())
        } else {
            Err(denied("relation", relation_name(rel)))
        }
    }

    /// 42501 unless the user owns the relation.
    pub fn require_owner(&self, rel: Relation<'_>) -> Result<()> {
        if self.owns_relation(rel) {
            Ok(())
        } else {
            Err(not_owner("relation", relation_name(rel)))
        }
    }

    /// The privileges on a schema: (held, grantable). System schemas are readable by all.
    pub fn on_schema(&self, schema: &str) -> (Privileges, Privileges) {
        if self.superuser {
            return (Privileges::SCHEMA_ALL, Privileges::SCHEMA_ALL);
        }
        if crate::sql::names::SYSTEM_SCHEMAS.contains(&schema) {
            return (Privileges::USAGE, Privileges::NONE);
        }
        if let Some(def) = self.state.schemas.get(schema)
            && self.owns(&def.owner)
        {
            return (Privileges::SCHEMA_ALL, Privileges::SCHEMA_ALL);
        }
        self.granted(&AclObject::Schema(schema.to_string()))
    }

    pub fn require_schema(&self, schema: &str, p: Privileges) -> Result<()> {
        if self.on_schema(schema).0.contains(p) {
            Ok(())
        } else {
            Err(denied("schema", schema))
        }
    }

    pub fn owns_schema(&self, schema: &str) -> bool {
        self.superuser
            || self
                .state
                .schemas
                .get(schema)
                .is_some_and(|d| self.owns(&d.owner))
    }

    pub fn on_database(&self) -> (Privileges, Privileges) {
        if self.superuser {
            return (Privileges::DATABASE_ALL, Privileges::DATABASE_ALL);
        }
        let (mut held, grantable) = self.granted(&AclObject::Database);
        // CREATEDB users create schemas, as the database's owners would.
        if self
            .state
            .users
            .get(&self.user)
            .is_some_and(|u| u.create_db)
        {
            held = held.with(Privileges::CREATE);
        }
        (held, grantable)
    }

    /// Checks the reads of a planned statement: SELECT on every table it scans (the columns
    /// it reads of each) and USAGE on their schemas. DataFusion inlines views where they are
    /// read, so a view's own scans are marked with the view's owner when it is planned
    /// (`planner::schemas`), and checked with the owner's rights; SELECT on the view itself
    /// is checked there too. The target of a DELETE / UPDATE / MERGE is left to the
    /// statement's own check (its rewrite reads every row of the segments it changes).
    pub fn check_reads(&self, plan: &LogicalPlan) -> Result<()> {
        let used = used_columns(plan)?;
        let mut failure: Option<Error> = None;
        plan.apply_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let Ok(provider) = source_as_provider(&scan.source) else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let any = provider.as_ref() as &dyn std::any::Any;
            // System tables and catalog views: readable by everyone (each shows what
            // PostgreSQL and Redshift show every user).
            let Some(t) = any.downcast_ref::<crate::planner::table::BlueshiftTable>() else {
                return Ok(TreeNodeRecursion::Continue);
            };
            if t.is_dml_target() {
                return Ok(TreeNodeRecursion::Continue);
            }
            let def = t.def();
            let qualifiers = scan_qualifiers(plan, scan);
            let columns: Vec<String> = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|name| {
                    def.column_index(name).is_some()
                        && used.iter().any(|(q, n)| {
                            n == name && q.as_ref().is_none_or(|q| qualifiers.contains(q))
                        })
                })
                .collect();
            let result = match t.reader() {
                Some(owner) => self.as_user(owner).check_table(def, &columns),
                None => self.check_table(def, &columns),
            };
            match result {
                Ok(()) => Ok(TreeNodeRecursion::Continue),
                Err(e) => {
                    failure = Some(e);
                    Ok(TreeNodeRecursion::Stop)
                }
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn check_table(&self, def: &TableDef, columns: &[String]) -> Result<()> {
        self.require_schema(&def.schema, Privileges::USAGE)?;
        if self.has_on_columns(Relation::Table(def), Privileges::SELECT, columns) {
            Ok(())
        } else {
            Err(denied("relation", &def.name))
        }
    }
}

/// Every column any expression of the plan (or of its subqueries) refers to: (the table or
/// alias it is qualified with, its name). The unoptimised plan scans whole tables; what a
/// statement reads of a table is what its expressions name (`SELECT *` is expanded into
/// columns by then; `count(*)` names none).
fn used_columns(plan: &LogicalPlan) -> Result<HashSet<(Option<String>, String)>> {
    let mut used = HashSet::new();
    plan.apply_with_subqueries(|node| {
        // A scan that is the whole plan returns every column it has.
        if let LogicalPlan::TableScan(scan) = node
            && std::ptr::eq(node, plan)
        {
            for f in scan.projected_schema.fields() {
                used.insert((None, f.name().clone()));
            }
        }
        for e in node.expressions() {
            for c in e.column_refs() {
                used.insert((
                    c.relation.as_ref().map(|r| r.table().to_string()),
                    c.name.clone(),
                ));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(used)
}

/// The names a scan's columns are qualified with above it: the table's, and the alias of a
/// `SubqueryAlias` right above it (`FROM t AS x`, or a view's name around its inlined plan).
fn scan_qualifiers(
    plan: &LogicalPlan,
    scan: &datafusion::logical_expr::TableScan,
) -> HashSet<String> {
    let mut names = HashSet::from([scan.table_name.table().to_string()]);
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::SubqueryAlias(a) = node
            && let LogicalPlan::TableScan(inner) = a.input.as_ref()
            && std::ptr::eq(inner, scan)
        {
            names.insert(a.alias.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

fn relation_owner<'r>(rel: Relation<'r>) -> &'r str {
    match rel {
        Relation::Table(t) => &t.owner,
        Relation::View(v) => &v.owner,
    }
}

fn relation_name<'r>(rel: Relation<'r>) -> &'r str {
    match rel {
        Relation::Table(t) => &t.name,
        Relation::View(v) => &v.name,
    }
}
