//! `GRANT` / `REVOKE` and `CREATE | ALTER | DROP GROUP`: names resolved at the statement's
//! catalog version, the grantor's authority checked ([`crate::privileges`]), and the change
//! applied as one catalog command.
//!
//! Who may grant: a superuser, the object's owner, or a user holding the privileges WITH
//! GRANT OPTION. REVOKE takes privileges from the grantee whoever granted them; taking a
//! grant option from a user who passed the privilege on needs CASCADE (which takes it from
//! those users too), else 2BP01. Groups are managed by superusers.

use blueshift_common::error::sqlstate;

use super::{Executor, Outcome, command, current_user, search_path, tx};
use crate::catalog::acl::{AclObject, Grantee, GroupDef, Privileges};
use crate::catalog::{AclChange, CatalogState, Command, Relation};
use crate::error::{Error, Result};
use crate::privileges::{Access, denied};
use crate::sql::grant::{GrantStatement, GrantTarget, GroupStatement};

fn undefined(what: &str, name: &str) -> Error {
    Error::sql(
        sqlstate::UNDEFINED_OBJECT,
        format!("{what} \"{name}\" does not exist"),
    )
}

/// The objects a GRANT names, each with what the grantor holds on it (privileges,
/// grantable) and its name for messages.
struct Object {
    acl: AclObject,
    kind: &'static str,
    name: String,
    grantable: Privileges,
    owner: bool,
}

impl Executor {
    pub(super) async fn grant_statement(&self, g: &GrantStatement) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let me = current_user();
        let access = Access::new(&snapshot, &self.leader.users, &me);
        for grantee in &g.grantees {
            match grantee {
                Grantee::User(u)
                    if !snapshot.users.contains_key(u) && !self.leader.users.contains(u) =>
                {
                    return Err(undefined("user", u));
                }
                Grantee::Group(name) if !snapshot.groups.contains_key(name) => {
                    return Err(undefined("group", name));
                }
                _ => {}
            }
        }
        let objects = self.objects(&snapshot, &access, g)?;
        let mut changes = Vec::new();
        for o in &objects {
            // The grantor's authority: owner (or superuser), or the privileges WITH GRANT
            // OPTION.
            if !o.owner && !o.grantable.contains(g.privileges) {
                return Err(denied(o.kind, &o.name));
            }
            let targets: Vec<AclObject> = if g.columns.is_empty() {
                vec![o.acl.clone()]
            } else {
                let AclObject::Relation(id) = o.acl else {
                    return Err(Error::sql(
                        sqlstate::SYNTAX_ERROR,
                        "column privileges are granted on a table",
                    ));
                };
                let known = relation_columns(&snapshot, id);
                g.columns
                    .iter()
                    .map(|c| {
                        if known.iter().any(|k| k == c) {
                            Ok(AclObject::Column(id, c.clone()))
                        } else {
                            Err(Error::sql(
                                sqlstate::UNDEFINED_COLUMN,
                                format!("column \"{c}\" of relation \"{}\" does not exist", o.name),
                            ))
                        }
                    })
                    .collect::<Result<_>>()?
            };
            for object in targets {
                for grantee in &g.grantees {
                    changes.push(AclChange {
                        object: object.clone(),
                        grantee: grantee.clone(),
                        privileges: g.privileges,
                        grant: g.grant,
                        grant_option: g.grant_option,
                        cascade: g.cascade,
                        grantor: me.clone(),
                    });
                }
            }
        }
        if !changes.is_empty() {
            tx::execute(&self.leader, |_| {
                Ok(Command::ChangeAcl {
                    changes: changes.clone(),
                })
            })
            .await?;
        }
        Ok(command(if g.grant { "GRANT" } else { "REVOKE" }))
    }

    fn objects(
        &self,
        snapshot: &CatalogState,
        access: &Access<'_>,
        g: &GrantStatement,
    ) -> Result<Vec<Object>> {
        let relation = |rel: Relation<'_>| {
            let (name, schema) = match rel {
                Relation::Table(t) => (t.name.clone(), t.schema.clone()),
                Relation::View(v) => (v.name.clone(), v.schema.clone()),
            };
            // Granting on a relation needs USAGE on its schema, as naming it does.
            access.require_schema(&schema, Privileges::USAGE)?;
            Ok(Object {
                acl: AclObject::Relation(rel.id()),
                kind: "relation",
                name,
                grantable: access.on_relation(rel).1,
                owner: access.owns_relation(rel),
            })
        };
        let exists = |s: &str| snapshot.schema_exists(s);
        match &g.target {
            GrantTarget::Relations(names) => names
                .iter()
                .map(|n| match snapshot.relation(n, &search_path()) {
                    Some(rel) => relation(rel),
                    None => Err(snapshot.missing(n)),
                })
                .collect(),
            GrantTarget::AllTablesIn(schemas) => {
                let mut out = Vec::new();
                for s in schemas {
                    if !exists(s) {
                        return Err(crate::catalog::undefined_schema(s));
                    }
                    for t in snapshot.tables.values().filter(|t| t.schema == *s) {
                        if !t.temporary {
                            out.push(relation(Relation::Table(t))?);
                        }
                    }
                    for v in snapshot.views.values().filter(|v| v.schema == *s) {
                        out.push(relation(Relation::View(v))?);
                    }
                }
                Ok(out)
            }
            GrantTarget::Schemas(schemas) => schemas
                .iter()
                .map(|s| {
                    if !exists(s) {
                        return Err(crate::catalog::undefined_schema(s));
                    }
                    Ok(Object {
                        acl: AclObject::Schema(s.clone()),
                        kind: "schema",
                        name: s.clone(),
                        grantable: access.on_schema(s).1,
                        owner: access.owns_schema(s),
                    })
                })
                .collect(),
            GrantTarget::Database => Ok(vec![Object {
                acl: AclObject::Database,
                kind: "database",
                name: self.leader.database.clone(),
                grantable: access.on_database().1,
                owner: access.is_superuser(),
            }]),
        }
    }

    pub(super) async fn group_statement(&self, g: &GroupStatement) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let me = current_user();
        if !Access::new(&snapshot, &self.leader.users, &me).is_superuser() {
            return Err(Error::sql(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "permission denied: only superusers may create, alter or drop groups",
            ));
        }
        let user_exists =
            |u: &String| snapshot.users.contains_key(u) || self.leader.users.contains(u);
        let check_users = |users: &[String]| -> Result<()> {
            match users.iter().find(|u| !user_exists(u)) {
                Some(u) => Err(undefined("user", u)),
                None => Ok(()),
            }
        };
        let existing = |name: &str| -> Result<GroupDef> {
            snapshot
                .groups
                .get(name)
                .cloned()
                .ok_or_else(|| undefined("group", name))
        };
        let (cmd, tag) = match g {
            GroupStatement::Create { name, users } => {
                if snapshot.groups.contains_key(name) {
                    return Err(Error::sql(
                        sqlstate::DUPLICATE_OBJECT,
                        format!("group \"{name}\" already exists"),
                    ));
                }
                check_users(users)?;
                let mut members: Vec<String> = Vec::new();
                for u in users {
                    if !members.contains(u) {
                        members.push(u.clone());
                    }
                }
                let id = snapshot.groups.values().map(|g| g.id).max().unwrap_or(99) + 1;
                (
                    Command::CreateGroup(GroupDef {
                        name: name.clone(),
                        id,
                        members,
                    }),
                    "CREATE GROUP",
                )
            }
            GroupStatement::AddUsers { name, users } => {
                check_users(users)?;
                let mut def = existing(name)?;
                for u in users {
                    if !def.members.contains(u) {
                        def.members.push(u.clone());
                    }
                }
                (
                    Command::AlterGroup {
                        name: name.clone(),
                        def,
                    },
                    "ALTER GROUP",
                )
            }
            GroupStatement::DropUsers { name, users } => {
                let mut def = existing(name)?;
                def.members.retain(|m| !users.contains(m));
                (
                    Command::AlterGroup {
                        name: name.clone(),
                        def,
                    },
                    "ALTER GROUP",
                )
            }
            GroupStatement::Rename { name, to } => {
                if snapshot.groups.contains_key(to) {
                    return Err(Error::sql(
                        sqlstate::DUPLICATE_OBJECT,
                        format!("group \"{to}\" already exists"),
                    ));
                }
                let mut def = existing(name)?;
                def.name = to.clone();
                (
                    Command::AlterGroup {
                        name: name.clone(),
                        def,
                    },
                    "ALTER GROUP",
                )
            }
            GroupStatement::Drop { name } => {
                existing(name)?;
                (Command::DropGroup { name: name.clone() }, "DROP GROUP")
            }
        };
        tx::execute(&self.leader, |_| Ok(cmd.clone())).await?;
        Ok(command(tag))
    }
}

fn relation_columns(snapshot: &CatalogState, id: u64) -> Vec<String> {
    if let Some(t) = snapshot.tables.get(&id) {
        return t.columns.iter().map(|c| c.name.clone()).collect();
    }
    snapshot
        .views
        .get(&id)
        .map(|v| v.columns.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

impl Executor {
    /// `SET SESSION AUTHORIZATION user | DEFAULT` and `RESET SESSION AUTHORIZATION`: a
    /// superuser's session runs its next statements as another user (for testing what that
    /// user may do, as in Redshift and PostgreSQL).
    pub(super) fn set_authorization(
        &self,
        stmt: &crate::sql::settings::SetStatement,
        settings: &mut std::collections::HashMap<String, String>,
    ) -> Result<Outcome> {
        use super::settings::{AUTHORIZATION_USER, SESSION_USER};
        let login = settings.get(SESSION_USER).cloned().unwrap_or_default();
        let snapshot = tx::snapshot(&self.leader);
        if !Access::new(&snapshot, &self.leader.users, &login).is_superuser() {
            return Err(Error::sql(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "permission denied to set session authorization",
            ));
        }
        let exists =
            |u: &str| snapshot.users.contains_key(u) || self.leader.users.iter().any(|b| b == u);
        match stmt.value.as_deref().map(str::trim) {
            None => {
                settings.remove(AUTHORIZATION_USER);
                return Ok(command("RESET"));
            }
            Some(v) if v.eq_ignore_ascii_case("default") => {
                settings.remove(AUTHORIZATION_USER);
            }
            Some(v) => {
                let user = if exists(v) {
                    v.to_string()
                } else if exists(&v.to_lowercase()) {
                    v.to_lowercase()
                } else {
                    return Err(undefined("user", v));
                };
                if user == login {
                    settings.remove(AUTHORIZATION_USER);
                } else {
                    settings.insert(AUTHORIZATION_USER.to_string(), user);
                }
            }
        }
        Ok(command("SET"))
    }
}
