//! Redshift's privilege statements and user groups:
//!
//! ```text
//! GRANT privileges ON [TABLE] rel [, ...] | ALL TABLES IN SCHEMA s [, ...]
//!       TO grantee [, ...] [WITH GRANT OPTION]
//! GRANT { USAGE | CREATE | ALL [PRIVILEGES] } [, ...] ON SCHEMA s [, ...] TO grantee [, ...]
//! GRANT { CREATE | TEMP | TEMPORARY | ALL [PRIVILEGES] } [, ...] ON DATABASE db TO ...
//! REVOKE [GRANT OPTION FOR] privileges ON ... FROM grantee [, ...] [CASCADE | RESTRICT]
//!   privileges: ALL [PRIVILEGES] | { SELECT | INSERT | UPDATE | DELETE | TRUNCATE |
//!               REFERENCES } [(column [, ...])] [, ...]
//!   grantee:    user | GROUP group | PUBLIC
//! CREATE GROUP g [[WITH] USER u [, ...]]
//! ALTER GROUP g { ADD | DROP } USER u [, ...]
//! ALTER GROUP g RENAME TO h
//! DROP GROUP g
//! ```
//!
//! This module only reads the statements into values; [`crate::privileges`] decides who
//! holds what, and the session applies them as catalog commands.

use datafusion::sql::sqlparser::tokenizer::Token;

use blueshift_common::error::sqlstate;

use super::names::RelationName;
use super::{ident, keyword};
use crate::catalog::acl::{Grantee, Privileges};
use crate::error::{Error, Result};

/// What a GRANT or REVOKE is about, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    /// Tables or views by name.
    Relations(Vec<RelationName>),
    /// `ALL TABLES IN SCHEMA s, ...`: every table and view there now.
    AllTablesIn(Vec<String>),
    Schemas(Vec<String>),
    /// The one database (its name is checked, not kept).
    Database,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantStatement {
    /// GRANT (false: REVOKE).
    pub grant: bool,
    pub privileges: Privileges,
    /// `ALL [PRIVILEGES]`: every privilege the object kind has.
    pub all: bool,
    /// `SELECT (a, b)`: column-level privileges (empty: the whole relation).
    pub columns: Vec<String>,
    pub target: GrantTarget,
    pub grantees: Vec<Grantee>,
    /// GRANT ... WITH GRANT OPTION; REVOKE GRANT OPTION FOR.
    pub grant_option: bool,
    /// REVOKE ... CASCADE.
    pub cascade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStatement {
    Create { name: String, users: Vec<String> },
    AddUsers { name: String, users: Vec<String> },
    DropUsers { name: String, users: Vec<String> },
    Rename { name: String, to: String },
    Drop { name: String },
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// A cursor over a statement's significant tokens.
struct Words<'a> {
    t: &'a [Token],
    i: usize,
}

impl Words<'_> {
    fn kw(&self) -> String {
        self.t.get(self.i).and_then(keyword).unwrap_or_default()
    }

    fn eat(&mut self, k: &str) -> bool {
        if self.kw() == k {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, k: &str) -> Result<()> {
        if self.eat(k) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected {k}")))
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        match self.t.get(self.i) {
            Some(t) => syntax(format!("syntax error at or near \"{t}\": {what}")),
            None => syntax(format!("syntax error at end of input: {what}")),
        }
    }

    fn peek_is(&self, t: &Token) -> bool {
        self.t.get(self.i) == Some(t)
    }

    fn name(&mut self, what: &str) -> Result<String> {
        let n = self
            .t
            .get(self.i)
            .and_then(ident)
            .ok_or_else(|| self.unexpected(&format!("expected {what}")))?;
        self.i += 1;
        Ok(n)
    }

    /// `a`, `s.a` or `db.s.a`.
    fn relation(&mut self) -> Result<RelationName> {
        let mut parts = vec![self.name("a table name")?];
        while self.peek_is(&Token::Period) {
            self.i += 1;
            parts.push(self.name("a name after \".\"")?);
        }
        match parts.as_slice() {
            [t] => Ok(RelationName::bare(t.clone())),
            [s, t] | [_, s, t] => Ok(RelationName::qualified(s.clone(), t.clone())),
            _ => Err(syntax(format!(
                "improper qualified name (too many dotted names): {}",
                parts.join(".")
            ))),
        }
    }

    /// `x [, y ...]` of `item`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let mut out = vec![item(self)?];
        while self.peek_is(&Token::Comma) {
            self.i += 1;
            out.push(item(self)?);
        }
        Ok(out)
    }

    fn done(&self) -> Result<()> {
        if self.i < self.t.len() {
            Err(self.unexpected("expected the end of the statement"))
        } else {
            Ok(())
        }
    }
}

/// Parses GRANT or REVOKE from its significant tokens.
pub fn parse_grant(t: &[Token]) -> Result<GrantStatement> {
    let mut w = Words { t, i: 0 };
    let grant = match w.kw().as_str() {
        "GRANT" => true,
        "REVOKE" => false,
        _ => return Err(syntax("expected GRANT or REVOKE")),
    };
    w.i = 1;
    let mut grant_option = false;
    if !grant && w.kw() == "GRANT" {
        w.i += 1;
        w.expect("OPTION")?;
        w.expect("FOR")?;
        grant_option = true;
    }
    // Privileges, up to ON.
    let mut privileges = Privileges::NONE;
    let mut all = false;
    let mut columns = Vec::new();
    if w.eat("ALL") {
        w.eat("PRIVILEGES");
        all = true;
    } else {
        loop {
            let p = match w.kw().as_str() {
                "SELECT" => Privileges::SELECT,
                "INSERT" => Privileges::INSERT,
                "UPDATE" => Privileges::UPDATE,
                "DELETE" => Privileges::DELETE,
                "TRUNCATE" => Privileges::TRUNCATE,
                "REFERENCES" => Privileges::REFERENCES,
                "USAGE" => Privileges::USAGE,
                "CREATE" => Privileges::CREATE,
                "TEMP" | "TEMPORARY" => Privileges::TEMP,
                "EXECUTE" | "ALTER" | "DROP" | "ASSUMEROLE" => {
                    return Err(Error::sql(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("the {} privilege is not supported", w.kw()),
                    ));
                }
                _ => return Err(w.unexpected("expected a privilege")),
            };
            w.i += 1;
            privileges = privileges.with(p);
            if w.peek_is(&Token::LParen) {
                w.i += 1;
                let cols = w.list(|w| w.name("a column name"))?;
                if !w.peek_is(&Token::RParen) {
                    return Err(w.unexpected("expected \")\""));
                }
                w.i += 1;
                if !matches!(p, Privileges::SELECT | Privileges::UPDATE) {
                    return Err(Error::sql(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "column privileges are SELECT and UPDATE",
                    ));
                }
                for c in cols {
                    if !columns.contains(&c) {
                        columns.push(c);
                    }
                }
            }
            if !w.peek_is(&Token::Comma) {
                break;
            }
            w.i += 1;
        }
    }
    w.expect("ON")?;
    let target = match w.kw().as_str() {
        "SCHEMA" => {
            w.i += 1;
            GrantTarget::Schemas(w.list(|w| w.name("a schema name"))?)
        }
        "DATABASE" => {
            w.i += 1;
            w.list(|w| w.name("a database name"))?;
            GrantTarget::Database
        }
        "ALL" => {
            w.i += 1;
            w.expect("TABLES")?;
            w.expect("IN")?;
            w.expect("SCHEMA")?;
            GrantTarget::AllTablesIn(w.list(|w| w.name("a schema name"))?)
        }
        "FUNCTION" | "PROCEDURE" | "LANGUAGE" | "MODEL" | "DATASHARE" => {
            return Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "privileges on a {} are not supported",
                    w.kw().to_lowercase()
                ),
            ));
        }
        _ => {
            w.eat("TABLE");
            GrantTarget::Relations(w.list(|w| w.relation())?)
        }
    };
    if !columns.is_empty() && !matches!(target, GrantTarget::Relations(_)) {
        return Err(syntax("column privileges are granted on a table"));
    }
    // Which privileges the object kind has; a privilege of another kind is refused.
    let kind_has = match target {
        GrantTarget::Relations(_) | GrantTarget::AllTablesIn(_) => Privileges::TABLE_ALL,
        GrantTarget::Schemas(_) => Privileges::SCHEMA_ALL,
        GrantTarget::Database => Privileges::DATABASE_ALL,
    };
    if all {
        privileges = kind_has;
    } else if !kind_has.contains(privileges) {
        return Err(Error::sql(
            sqlstate::INVALID_GRANT_OPERATION,
            format!(
                "invalid privilege type {} for {}",
                privileges.without(kind_has).names().join(", "),
                match target {
                    GrantTarget::Relations(_) | GrantTarget::AllTablesIn(_) => "relation",
                    GrantTarget::Schemas(_) => "schema",
                    GrantTarget::Database => "database",
                }
            ),
        ));
    }
    w.expect(if grant { "TO" } else { "FROM" })?;
    let grantees = w.list(|w| {
        if w.eat("PUBLIC") {
            Ok(Grantee::Public)
        } else if w.eat("GROUP") {
            Ok(Grantee::Group(w.name("a group name")?))
        } else if w.kw() == "ROLE" {
            Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "roles are not supported yet: grant to a user or a group",
            ))
        } else {
            Ok(Grantee::User(w.name("a user name")?))
        }
    })?;
    let mut cascade = false;
    if grant {
        if w.eat("WITH") {
            w.expect("GRANT")?;
            w.expect("OPTION")?;
            grant_option = true;
        }
    } else if w.eat("CASCADE") {
        cascade = true;
    } else {
        w.eat("RESTRICT");
    }
    w.done()?;
    if grant_option && grantees.iter().any(|g| !matches!(g, Grantee::User(_))) {
        return Err(Error::sql(
            sqlstate::INVALID_GRANT_OPERATION,
            "grant options can only be granted to users",
        ));
    }
    Ok(GrantStatement {
        grant,
        privileges,
        all,
        columns,
        target,
        grantees,
        grant_option,
        cascade,
    })
}

/// Parses `CREATE | ALTER | DROP GROUP ...` from its significant tokens.
pub fn parse_group(t: &[Token]) -> Result<GroupStatement> {
    let mut w = Words { t, i: 0 };
    let verb = w.kw();
    w.i = 1;
    w.expect("GROUP")?;
    let name = w.name("a group name")?;
    let users = |w: &mut Words| -> Result<Vec<String>> {
        w.expect("USER")?;
        w.list(|w| w.name("a user name"))
    };
    let stmt = match verb.as_str() {
        "CREATE" => {
            let has_users = w.eat("WITH") || w.kw() == "USER";
            GroupStatement::Create {
                name,
                users: if has_users {
                    users(&mut w)?
                } else {
                    Vec::new()
                },
            }
        }
        "ALTER" if w.eat("ADD") => GroupStatement::AddUsers {
            name,
            users: users(&mut w)?,
        },
        "ALTER" if w.eat("DROP") => GroupStatement::DropUsers {
            name,
            users: users(&mut w)?,
        },
        "ALTER" if w.eat("RENAME") => {
            w.expect("TO")?;
            GroupStatement::Rename {
                name,
                to: w.name("the new group name")?,
            }
        }
        "ALTER" => return Err(w.unexpected("expected ADD USER, DROP USER or RENAME TO")),
        "DROP" => GroupStatement::Drop { name },
        _ => return Err(syntax("expected CREATE, ALTER or DROP GROUP")),
    };
    w.done()?;
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(sql: &str) -> Result<GrantStatement> {
        parse_grant(&crate::sql::words(sql)?)
    }

    #[test]
    fn parses_table_grants() {
        let g = grant("grant select, insert on table s.t, u to ann, group Crew with grant option");
        let g = g.unwrap_err();
        // Grant options go to users only.
        assert_eq!(g.sqlstate(), "0LP01");
        let g = grant("grant select, insert on table s.t, u to ann, group crew").unwrap();
        assert_eq!(
            g.target,
            GrantTarget::Relations(vec![
                RelationName::qualified("s", "t"),
                RelationName::bare("u")
            ])
        );
        assert_eq!(g.privileges, Privileges::SELECT.with(Privileges::INSERT));
        assert_eq!(
            g.grantees,
            vec![Grantee::User("ann".into()), Grantee::Group("crew".into())]
        );
        let g = grant("grant all privileges on t to public").unwrap();
        assert!(g.all);
        assert_eq!(g.privileges, Privileges::TABLE_ALL);
        assert_eq!(g.grantees, vec![Grantee::Public]);
        let g = grant("grant select (a, b) on t to ann").unwrap();
        assert_eq!(g.columns, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn parses_schema_database_and_revoke() {
        let g = grant("grant usage, create on schema s1, s2 to ann").unwrap();
        assert_eq!(
            g.target,
            GrantTarget::Schemas(vec!["s1".into(), "s2".into()])
        );
        let g = grant("grant temp on database dev to group g").unwrap();
        assert_eq!(g.target, GrantTarget::Database);
        let r = grant("revoke grant option for select on all tables in schema s from ann cascade")
            .unwrap();
        assert!(!r.grant && r.grant_option && r.cascade);
        assert_eq!(r.target, GrantTarget::AllTablesIn(vec!["s".into()]));
        assert_eq!(
            grant("grant usage on t to ann").unwrap_err().sqlstate(),
            "0LP01"
        );
        assert_eq!(grant("grant select on t").unwrap_err().sqlstate(), "42601");
        assert_eq!(
            grant("grant execute on function f() to ann")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
    }

    #[test]
    fn parses_groups() {
        let g = |sql: &str| parse_group(&crate::sql::words(sql).unwrap());
        assert_eq!(
            g("create group crew with user ann, bob").unwrap(),
            GroupStatement::Create {
                name: "crew".into(),
                users: vec!["ann".into(), "bob".into()]
            }
        );
        assert_eq!(
            g("create group crew").unwrap(),
            GroupStatement::Create {
                name: "crew".into(),
                users: vec![]
            }
        );
        assert_eq!(
            g("alter group crew drop user bob").unwrap(),
            GroupStatement::DropUsers {
                name: "crew".into(),
                users: vec!["bob".into()]
            }
        );
        assert_eq!(
            g("alter group crew rename to team").unwrap(),
            GroupStatement::Rename {
                name: "crew".into(),
                to: "team".into()
            }
        );
        assert!(g("alter group crew").is_err());
    }
}
