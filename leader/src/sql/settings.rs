//! Parsing `SET [SESSION | LOCAL] name { TO | = } value`, `RESET name` and `SHOW name` of a
//! setting. Running them (and what each setting means) is `session::settings`.

use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::keyword;
use crate::error::{Error, Result};

/// `SET name = value` (`value: Some`) or `RESET name` (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatement {
    /// Lower-cased.
    pub name: String,
    pub value: Option<String>,
}

/// Parses `SET` / `RESET` from its significant tokens. The value is the rest of the
/// statement, quoted strings unquoted, parts joined by single spaces.
pub fn parse_set(ws: &[Token]) -> Result<SetStatement> {
    let is_reset = ws.first().and_then(keyword).as_deref() == Some("RESET");
    let mut i = 1;
    if matches!(
        ws.get(1).and_then(keyword).as_deref(),
        Some("SESSION" | "LOCAL")
    ) {
        i += 1;
    }
    let name = ws
        .get(i)
        .map(|t| t.to_string().to_ascii_lowercase())
        .ok_or_else(|| Error::sql(sqlstate::SYNTAX_ERROR, "SET needs a setting name"))?;
    if is_reset {
        return Ok(SetStatement { name, value: None });
    }
    let mut rest = &ws[(i + 1).min(ws.len())..];
    if let Some(first) = rest.first()
        && (first == &Token::Eq || keyword(first).as_deref() == Some("TO"))
    {
        rest = &rest[1..];
    }
    let value = rest
        .iter()
        .map(|t| match t {
            Token::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(SetStatement {
        name,
        value: Some(value),
    })
}

/// The setting a `SHOW name` names (lower-cased; several words, as in `SHOW TRANSACTION
/// ISOLATION LEVEL`, joined by spaces).
pub fn parse_show_setting(ws: &[Token]) -> Result<String> {
    let name = ws
        .get(1..)
        .unwrap_or_default()
        .iter()
        .map(|t| t.to_string().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        return Err(Error::sql(
            sqlstate::SYNTAX_ERROR,
            "SHOW needs a setting name",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_reset_and_show() {
        let ws = |s: &str| crate::sql::words(s).unwrap();
        assert_eq!(
            parse_set(&ws("set session search_path to 'a', public")).unwrap(),
            SetStatement {
                name: "search_path".into(),
                value: Some("a , public".into())
            }
        );
        assert_eq!(
            parse_set(&ws("RESET Statement_Timeout")).unwrap(),
            SetStatement {
                name: "statement_timeout".into(),
                value: None
            }
        );
        assert_eq!(
            parse_show_setting(&ws("show transaction isolation level")).unwrap(),
            "transaction isolation level"
        );
    }
}
