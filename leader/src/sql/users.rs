//! Redshift's user statements:
//!
//! ```text
//! CREATE USER name [WITH] PASSWORD { 'password' | 'md5hash' | DISABLE } [option ...]
//! ALTER USER name [WITH] { PASSWORD { 'password' | 'md5hash' | DISABLE } | option } ...
//! DROP USER [IF EXISTS] name [, ...]
//! ```
//!
//! with options `CREATEUSER | NOCREATEUSER` (superuser), `CREATEDB | NOCREATEDB` and
//! `CONNECTION LIMIT { n | UNLIMITED }`. Options Blueshift would accept without enforcing
//! (`VALID UNTIL`, `SYSLOG ACCESS`, `SESSION TIMEOUT`, ...) are refused with 0A000 rather
//! than ignored.

use datafusion::sql::sqlparser::tokenizer::Token;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};
use crate::sql::{ident, keyword};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    Set(String),
    Disable,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserOptions {
    pub password: Option<Password>,
    pub superuser: Option<bool>,
    pub create_db: Option<bool>,
    /// `CONNECTION LIMIT n` (`Some(Some(n))`) or `UNLIMITED` (`Some(None)`).
    pub connection_limit: Option<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserStatement {
    Create { name: String, options: UserOptions },
    Alter { name: String, options: UserOptions },
    Drop { names: Vec<String>, if_exists: bool },
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// Parses a user statement from its significant tokens (`CREATE | ALTER | DROP USER`).
pub fn parse_user_statement(ws: &[Token]) -> Result<UserStatement> {
    let kw = |i: usize| ws.get(i).and_then(keyword).unwrap_or_default();
    if kw(1) != "USER" || !matches!(kw(0).as_str(), "CREATE" | "ALTER" | "DROP") {
        return Err(syntax("expected CREATE, ALTER or DROP USER"));
    }
    if kw(0) == "DROP" {
        let mut i = 2;
        let if_exists = kw(2) == "IF" && kw(3) == "EXISTS";
        if if_exists {
            i = 4;
        }
        let mut names = Vec::new();
        loop {
            names.push(
                ws.get(i)
                    .and_then(ident)
                    .ok_or_else(|| syntax("DROP USER needs a user name"))?,
            );
            i += 1;
            match ws.get(i) {
                Some(Token::Comma) => i += 1,
                None => break,
                Some(t) => return Err(syntax(format!("syntax error at or near \"{t}\""))),
            }
        }
        return Ok(UserStatement::Drop { names, if_exists });
    }
    let name = ws
        .get(2)
        .and_then(ident)
        .ok_or_else(|| syntax(format!("{} USER needs a user name", kw(0))))?;
    let mut options = UserOptions::default();
    let mut i = 3;
    if kw(i) == "WITH" {
        i += 1;
    }
    while i < ws.len() {
        match kw(i).as_str() {
            "PASSWORD" => {
                options.password = Some(match ws.get(i + 1) {
                    Some(Token::SingleQuotedString(p)) => Password::Set(p.clone()),
                    Some(t) if keyword(t).as_deref() == Some("DISABLE") => Password::Disable,
                    _ => return Err(syntax("PASSWORD needs a quoted password or DISABLE")),
                });
                i += 2;
            }
            "CREATEUSER" => (options.superuser, i) = (Some(true), i + 1),
            "NOCREATEUSER" => (options.superuser, i) = (Some(false), i + 1),
            "CREATEDB" => (options.create_db, i) = (Some(true), i + 1),
            "NOCREATEDB" => (options.create_db, i) = (Some(false), i + 1),
            "CONNECTION" if kw(i + 1) == "LIMIT" => {
                options.connection_limit = Some(match ws.get(i + 2) {
                    Some(Token::Number(n, _)) => Some(n.parse::<u32>().map_err(|_| {
                        Error::sql(
                            sqlstate::INVALID_PARAMETER_VALUE,
                            format!("CONNECTION LIMIT must be a number of connections, not {n}"),
                        )
                    })?),
                    Some(t) if keyword(t).as_deref() == Some("UNLIMITED") => None,
                    _ => return Err(syntax("CONNECTION LIMIT needs a number or UNLIMITED")),
                });
                i += 3;
            }
            "" => {
                return Err(syntax(format!("syntax error at or near \"{}\"", ws[i])));
            }
            other => {
                return Err(Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("user option {other} is not supported"),
                ));
            }
        }
    }
    Ok(if kw(0) == "CREATE" {
        if options.password.is_none() {
            return Err(syntax(
                "CREATE USER needs PASSWORD 'password' or PASSWORD DISABLE",
            ));
        }
        UserStatement::Create { name, options }
    } else {
        UserStatement::Alter { name, options }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_user_statement(sql: &str) -> Result<Option<UserStatement>> {
        let ws = crate::sql::words(sql)?;
        if ws.get(1).and_then(keyword).as_deref() != Some("USER") {
            return Ok(None);
        }
        super::parse_user_statement(&ws).map(Some)
    }

    #[test]
    fn parses_create_alter_drop() {
        assert_eq!(
            parse_user_statement("create user Alice with password 'Secret123' createuser")
                .unwrap()
                .unwrap(),
            UserStatement::Create {
                name: "alice".into(),
                options: UserOptions {
                    password: Some(Password::Set("Secret123".into())),
                    superuser: Some(true),
                    create_db: None,
                    connection_limit: None,
                },
            }
        );
        assert_eq!(
            parse_user_statement("alter user bob password disable")
                .unwrap()
                .unwrap(),
            UserStatement::Alter {
                name: "bob".into(),
                options: UserOptions {
                    password: Some(Password::Disable),
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            parse_user_statement("drop user if exists a, \"B\"")
                .unwrap()
                .unwrap(),
            UserStatement::Drop {
                names: vec!["a".into(), "B".into()],
                if_exists: true,
            }
        );
        assert_eq!(
            parse_user_statement("create table t (a int)").unwrap(),
            None
        );
    }

    #[test]
    fn connection_limits() {
        let options = |sql: &str| match parse_user_statement(sql).unwrap().unwrap() {
            UserStatement::Create { options, .. } | UserStatement::Alter { options, .. } => {
                options.connection_limit
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            options("create user a password 'Secret123' connection limit 3"),
            Some(Some(3))
        );
        assert_eq!(
            options("alter user a connection limit unlimited"),
            Some(None)
        );
        let e = parse_user_statement("alter user a connection limit lots").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }

    #[test]
    fn unenforced_options_are_refused() {
        let e = parse_user_statement("create user a password 'Secret123' valid until 'infinity'")
            .unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        let e = parse_user_statement("create user a").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }
}
