//! `CREATE SCHEMA` and `DROP SCHEMA [CASCADE]` (the schema's tables and views, and the
//! views elsewhere that read them, dropped in the same catalog command).

use blueshift_common::error::sqlstate;

use super::{Executor, Outcome, command, current_user, tx};
use crate::catalog::{Command, SchemaDef};
use crate::error::{Error, Result};
use crate::sql::schemas::SchemaStatement;

impl Executor {
    pub(super) async fn schema_statement(&self, stmt: &SchemaStatement) -> Result<Outcome> {
        match stmt {
            SchemaStatement::Create {
                name,
                if_not_exists,
                owner,
            } => {
                let snapshot = tx::snapshot(&self.leader);
                if *if_not_exists && snapshot.schema_exists(name) {
                    return Ok(command("CREATE SCHEMA"));
                }
                let access = self.access(&snapshot);
                if !access
                    .on_database()
                    .0
                    .contains(crate::catalog::acl::Privileges::CREATE)
                {
                    return Err(crate::privileges::denied("database", &self.leader.database));
                }
                // Only a superuser creates a schema for someone else.
                if let Some(o) = owner
                    && *o != current_user()
                    && !access.is_superuser()
                {
                    return Err(Error::sql(
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        format!(
                            "permission denied: only a superuser may create a schema owned by {o}"
                        ),
                    ));
                }
                if name.starts_with("pg_") {
                    return Err(Error::sql(
                        "42939",
                        format!(
                            "unacceptable schema name \"{name}\": the prefix \"pg_\" is \
                             reserved for system schemas"
                        ),
                    ));
                }
                let def = SchemaDef {
                    name: name.clone(),
                    owner: owner.clone().unwrap_or_else(current_user),
                };
                tx::execute(&self.leader, |_| Ok(Command::CreateSchema(def.clone()))).await?;
                Ok(command("CREATE SCHEMA"))
            }
            SchemaStatement::Drop {
                names,
                if_exists,
                cascade,
            } => {
                let snapshot = tx::snapshot(&self.leader);
                let mut commands = Vec::new();
                for name in names {
                    if name == crate::sql::names::PUBLIC {
                        return Err(Error::sql(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "the public schema cannot be dropped",
                        ));
                    }
                    if !snapshot.schemas.contains_key(name) {
                        if *if_exists {
                            continue;
                        }
                        return Err(crate::catalog::undefined_schema(name));
                    }
                    if !self.access(&snapshot).owns_schema(name) {
                        return Err(crate::privileges::not_owner("schema", name));
                    }
                    if *cascade {
                        let ids: Vec<u64> = snapshot
                            .tables
                            .values()
                            .filter(|t| t.schema == *name)
                            .map(|t| t.id)
                            .chain(
                                snapshot
                                    .views
                                    .values()
                                    .filter(|v| v.schema == *name)
                                    .map(|v| v.id),
                            )
                            .collect();
                        for c in snapshot.drop_commands(&ids, true) {
                            if !commands.iter().any(|d| same_drop(d, &c)) {
                                commands.push(c);
                            }
                        }
                    }
                    commands.push(Command::DropSchema { name: name.clone() });
                }
                if !commands.is_empty() {
                    tx::execute(&self.leader, |s| {
                        Ok(Command::Transaction {
                            base_version: s.version,
                            commands: commands.clone(),
                        })
                    })
                    .await?;
                }
                Ok(command("DROP SCHEMA"))
            }
        }
    }
}

fn same_drop(a: &Command, b: &Command) -> bool {
    match (a, b) {
        (Command::DropTable { id: x }, Command::DropTable { id: y })
        | (Command::DropView { id: x }, Command::DropView { id: y }) => x == y,
        _ => false,
    }
}
