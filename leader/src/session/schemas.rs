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
                if *if_not_exists && tx::snapshot(&self.leader).schema_exists(name) {
                    return Ok(command("CREATE SCHEMA"));
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
