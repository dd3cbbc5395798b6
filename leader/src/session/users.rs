//! `CREATE` / `ALTER` / `DROP USER`: superusers only, except a user changing their own
//! password; secrets from [`crate::auth`], stored as catalog commands.

use blueshift_common::error::sqlstate;

use super::{Executor, Outcome, command};
use crate::catalog::Command;
use crate::error::{Error, Result};

impl Executor {
    /// CREATE / ALTER / DROP USER: superusers only, except a user changing their own
    /// password.
    pub(super) async fn user_statement(
        &self,
        stmt: &crate::sql::users::UserStatement,
    ) -> Result<Outcome> {
        use crate::sql::users::{Password, UserStatement};
        let stmt = stmt.clone();
        let me = super::current_user();
        let snapshot = super::tx::snapshot(&self.leader);
        let superuser = self.leader.is_superuser(&me);
        let own_password = matches!(&stmt, UserStatement::Alter { name, options }
            if *name == me
                && options.superuser.is_none()
                && options.create_db.is_none()
                && options.connection_limit.is_none());
        if !superuser && !own_password {
            return Err(Error::sql(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "permission denied: only superusers may create, alter or drop users",
            ));
        }
        // Which secrets a cleartext password leaves: the session's `password_encryption`.
        let md5_auth = self.leader.md5_auth;
        let encryption = match super::statement_settings()
            .settings
            .get(crate::auth::PASSWORD_ENCRYPTION)
        {
            Some(v) => crate::auth::PasswordEncryption::parse(v, md5_auth)?,
            None => crate::auth::PasswordEncryption::Scram,
        };
        let apply_password = |u: &mut crate::auth::UserDef, p: &Option<Password>| -> Result<()> {
            match p {
                Some(Password::Set(p)) => {
                    (u.scram, u.md5) = crate::auth::secrets(&u.name, p, encryption, md5_auth)?
                }
                Some(Password::Disable) => (u.scram, u.md5) = (None, None),
                None => {}
            }
            Ok(())
        };
        let (commands, tag) = match stmt {
            UserStatement::Create { name, options } => {
                let mut u = crate::auth::UserDef {
                    name,
                    id: snapshot
                        .users
                        .values()
                        .map(|u| u.id)
                        .max()
                        .unwrap_or(99)
                        .max(99)
                        + 1,
                    superuser: options.superuser.unwrap_or(false),
                    create_db: options.create_db.unwrap_or(false),
                    scram: None,
                    md5: None,
                    connection_limit: options.connection_limit.flatten(),
                };
                apply_password(&mut u, &options.password)?;
                (vec![Command::CreateUser(u)], "CREATE USER")
            }
            UserStatement::Alter { name, options } => {
                let (mut u, exists) = match snapshot.users.get(&name) {
                    Some(u) => (u.clone(), true),
                    // The built-in password-less users get an entry once given a password.
                    None if self.leader.users.contains(&name) => (
                        crate::auth::UserDef {
                            name: name.clone(),
                            id: 10
                                + self
                                    .leader
                                    .users
                                    .iter()
                                    .position(|u| *u == name)
                                    .unwrap_or(0) as u32,
                            superuser: true,
                            create_db: true,
                            scram: None,
                            md5: None,
                            connection_limit: None,
                        },
                        false,
                    ),
                    None => {
                        return Err(Error::sql(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("user \"{name}\" does not exist"),
                        ));
                    }
                };
                if let Some(s) = options.superuser {
                    u.superuser = s;
                }
                if let Some(c) = options.create_db {
                    u.create_db = c;
                }
                if let Some(limit) = options.connection_limit {
                    u.connection_limit = limit;
                }
                apply_password(&mut u, &options.password)?;
                let cmd = if exists {
                    Command::AlterUser(u)
                } else {
                    Command::CreateUser(u)
                };
                (vec![cmd], "ALTER USER")
            }
            UserStatement::Drop { names, if_exists } => {
                let mut cmds = Vec::new();
                for name in names {
                    if name == me {
                        return Err(Error::sql(
                            sqlstate::OBJECT_IN_USE,
                            "current user cannot be dropped",
                        ));
                    }
                    if snapshot.users.contains_key(&name) {
                        cmds.push(Command::DropUser { name });
                    } else if !if_exists {
                        return Err(Error::sql(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("user \"{name}\" does not exist"),
                        ));
                    }
                }
                (cmds, "DROP USER")
            }
        };
        for c in commands {
            super::tx::execute(&self.leader, |_| Ok(c)).await?;
        }
        Ok(command(tag))
    }
}
