//! `COPY ... TO STDOUT` (psql's `\copy ... to`, psycopg's `cursor.copy("COPY ... TO STDOUT")`):
//!
//! ```text
//! COPY { table [(column, ...)] | (query) } TO STDOUT
//!     [ [WITH] (FORMAT {text | csv}, HEADER [bool], DELIMITER 'c', NULL 'string') ]
//!     | [CSV] [HEADER] [DELIMITER [AS] 'c'] [NULL [AS] 'string']
//! ```
//!
//! Values are written in their PostgreSQL text form (the same text a SELECT returns). The
//! text format escapes backslash, newline, carriage return and the delimiter, and writes
//! NULL as `\N`; CSV quotes a value holding the delimiter, a quote, a line break, or nothing
//! at all (an empty string, told apart from NULL, which is written unquoted and empty).
//! This module parses and encodes; the session runs the query and pgwire sends the rows.
//!
//! Known deviation: pgwire counts COPY data messages for the command tag, and the header
//! travels with the first row, so an empty result with HEADER reports `COPY 1`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use datafusion::sql::sqlparser::tokenizer::Token;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};
use crate::sql::names::RelationName;
use crate::sql::statement::{Ast, parse_ast, parse_query};
use crate::sql::{ident, keyword};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Table {
        name: RelationName,
        columns: Option<Vec<String>>,
    },
    Query(Box<Ast>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    pub source: CopySource,
    pub csv: bool,
    pub header: bool,
    pub delimiter: char,
    pub null: String,
}

impl CopyOut {
    /// The SELECT whose rows are copied.
    pub fn query(&self) -> Result<Ast> {
        match &self.source {
            CopySource::Query(q) => Ok((**q).clone()),
            CopySource::Table { name, columns } => {
                // SELECT cols FROM "name", built as tokens (the names are already folded).
                let quoted = |n: &str| Token::make_word(n, Some('"'));
                let mut t = vec![Token::make_keyword("SELECT")];
                match columns {
                    Some(cols) => {
                        for (i, c) in cols.iter().enumerate() {
                            if i > 0 {
                                t.push(Token::Comma);
                            }
                            t.push(quoted(c));
                        }
                    }
                    None => t.push(Token::Mul),
                }
                t.push(Token::make_keyword("FROM"));
                if let Some(schema) = &name.schema {
                    t.push(quoted(schema));
                    t.push(Token::Period);
                }
                t.push(quoted(&name.name));
                parse_ast(t)
            }
        }
    }
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// Parses a `COPY ... TO STDOUT` from its significant tokens; `None` for a COPY FROM.
pub fn parse_copy_to(all: &[Token]) -> Result<Option<CopyOut>> {
    let sig: Vec<(usize, &Token)> = all.iter().enumerate().collect();
    if sig.first().and_then(|(_, t)| keyword(t)).as_deref() != Some("COPY") {
        return Ok(None);
    }
    let mut i = 1;
    let source = if let Some((at, Token::LParen)) = sig.get(1) {
        // (query): up to the matching parenthesis
        let mut depth = 0;
        let mut end = None;
        for (k, (_, t)) in sig.iter().enumerate().skip(1) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| syntax("unbalanced parentheses in COPY (query)"))?;
        // Only a COPY ... TO has a (query); a COPY FROM says so below.
        if sig.get(end + 1).and_then(|(_, t)| keyword(t)).as_deref() != Some("TO") {
            return Ok(None);
        }
        let query = parse_query(all[at + 1..sig[end].0].to_vec())?;
        i = end + 1;
        CopySource::Query(Box::new(Ast::Query(query)))
    } else {
        let first = sig
            .get(i)
            .and_then(|(_, t)| ident(t))
            .ok_or_else(|| syntax("COPY needs a table name or a (query)"))?;
        i += 1;
        let mut name = RelationName::bare(first);
        if let Some((_, Token::Period)) = sig.get(i) {
            let table = sig
                .get(i + 1)
                .and_then(|(_, t)| ident(t))
                .ok_or_else(|| syntax("COPY needs a table name"))?;
            name = RelationName::qualified(name.name, table);
            i += 2;
        }
        let mut columns = None;
        if let Some((_, Token::LParen)) = sig.get(i) {
            i += 1;
            let mut cols = Vec::new();
            loop {
                cols.push(
                    sig.get(i)
                        .and_then(|(_, t)| ident(t))
                        .ok_or_else(|| syntax("expected a column name"))?,
                );
                i += 1;
                match sig.get(i).map(|(_, t)| *t) {
                    Some(Token::Comma) => i += 1,
                    Some(Token::RParen) => {
                        i += 1;
                        break;
                    }
                    _ => return Err(syntax("expected , or ) in the column list")),
                }
            }
            columns = Some(cols);
        }
        CopySource::Table { name, columns }
    };
    match sig.get(i).and_then(|(_, t)| keyword(t)).as_deref() {
        Some("TO") => {}
        _ => return Ok(None),
    }
    i += 1;
    match sig.get(i).map(|(_, t)| *t) {
        Some(t) if keyword(t).as_deref() == Some("STDOUT") => i += 1,
        Some(Token::SingleQuotedString(_)) => {
            return Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY TO a server file is not supported: use COPY ... TO STDOUT (psql \\copy) \
                 or UNLOAD",
            ));
        }
        _ => return Err(syntax("COPY ... TO needs STDOUT")),
    }
    let rest: Vec<Token> = sig[i..].iter().map(|(_, t)| (*t).clone()).collect();
    let mut out = CopyOut {
        source,
        csv: false,
        header: false,
        delimiter: '\t',
        null: "\\N".to_string(),
    };
    parse_options(&rest, &mut out)?;
    Ok(Some(out))
}

fn parse_options(t: &[Token], o: &mut CopyOut) -> Result<()> {
    let mut i = 0;
    if t.first().and_then(keyword).as_deref() == Some("WITH") {
        i += 1;
    }
    let parenthesized = t.get(i) == Some(&Token::LParen);
    if parenthesized {
        i += 1;
    }
    let mut delimiter = None;
    let mut null = None;
    let quoted = |t: Option<&Token>, what: &str| -> Result<String> {
        match t {
            Some(Token::SingleQuotedString(s)) => Ok(s.clone()),
            _ => Err(syntax(format!("{what} needs a quoted string"))),
        }
    };
    while let Some(tok) = t.get(i) {
        i += 1;
        if matches!(tok, Token::Comma) {
            continue;
        }
        if matches!(tok, Token::RParen) && parenthesized {
            break;
        }
        match keyword(tok).as_deref() {
            Some("FORMAT") => {
                o.csv = match t.get(i).and_then(keyword).as_deref() {
                    Some("CSV") => true,
                    Some("TEXT") => false,
                    other => {
                        return Err(Error::sql(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!(
                                "COPY TO STDOUT format {} is not supported",
                                other.unwrap_or("?")
                            ),
                        ));
                    }
                };
                i += 1;
            }
            Some("CSV") => o.csv = true,
            Some("HEADER") => {
                o.header = match t.get(i).and_then(keyword).as_deref() {
                    Some("TRUE" | "ON") => {
                        i += 1;
                        true
                    }
                    Some("FALSE" | "OFF") => {
                        i += 1;
                        false
                    }
                    _ => true,
                };
            }
            Some("DELIMITER") => {
                if t.get(i).and_then(keyword).as_deref() == Some("AS") {
                    i += 1;
                }
                let d = quoted(t.get(i), "DELIMITER")?;
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => delimiter = Some(c),
                    _ => return Err(syntax("COPY delimiter must be a single character")),
                }
                i += 1;
            }
            Some("NULL") => {
                if t.get(i).and_then(keyword).as_deref() == Some("AS") {
                    i += 1;
                }
                null = Some(quoted(t.get(i), "NULL")?);
                i += 1;
            }
            _ => {
                return Err(Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("COPY TO STDOUT option {tok} is not supported"),
                ));
            }
        }
    }
    o.delimiter = delimiter.unwrap_or(if o.csv { ',' } else { '\t' });
    o.null = null.unwrap_or_else(|| {
        if o.csv {
            String::new()
        } else {
            "\\N".to_string()
        }
    });
    if o.header && !o.csv {
        return Err(syntax("COPY HEADER is available only in CSV mode"));
    }
    Ok(())
}

/// The values of `batch` in PostgreSQL's text form, row by row (`None` for NULL).
pub fn text_values(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>> {
    use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
    let fields = Arc::new(
        arrow_schema_to_pg_fields(
            batch.schema().as_ref(),
            &pgwire::api::portal::Format::UnifiedText,
            None,
        )
        .map_err(|e| Error::sql(sqlstate::INTERNAL_ERROR, e.to_string()))?,
    );
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in encode_recordbatch(fields, batch.clone()) {
        let row = row.map_err(|e| Error::sql(sqlstate::INTERNAL_ERROR, e.to_string()))?;
        // DataRow body: per field an i32 length (-1: NULL) and the bytes.
        let mut values = Vec::with_capacity(row.field_count as usize);
        let data = row.data;
        let mut at = 0;
        for _ in 0..row.field_count {
            let len = i32::from_be_bytes(
                data.get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "short data row"))?,
            );
            at += 4;
            if len < 0 {
                values.push(None);
            } else {
                let bytes = data
                    .get(at..at + len as usize)
                    .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "short data row"))?;
                values.push(Some(String::from_utf8_lossy(bytes).into_owned()));
                at += len as usize;
            }
        }
        rows.push(values);
    }
    Ok(rows)
}

impl CopyOut {
    /// The header line (CSV with HEADER), with its line end.
    pub fn header_line(&self, schema: &Schema) -> Option<String> {
        self.header.then(|| {
            let names: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| self.csv_field(f.name()))
                .collect();
            format!("{}\n", names.join(&self.delimiter.to_string()))
        })
    }

    /// One row as a line of the output format.
    pub fn line(&self, values: &[Option<String>]) -> String {
        let mut line = String::new();
        for (k, v) in values.iter().enumerate() {
            if k > 0 {
                line.push(self.delimiter);
            }
            match v {
                None => line.push_str(&self.null),
                Some(v) if self.csv => line.push_str(&self.csv_field(v)),
                Some(v) => {
                    for c in v.chars() {
                        match c {
                            '\\' => line.push_str("\\\\"),
                            '\n' => line.push_str("\\n"),
                            '\r' => line.push_str("\\r"),
                            '\t' => line.push_str("\\t"),
                            c if c == self.delimiter => {
                                line.push('\\');
                                line.push(c);
                            }
                            c => line.push(c),
                        }
                    }
                }
            }
        }
        line.push('\n');
        line
    }

    fn csv_field(&self, v: &str) -> String {
        let needs_quotes = v.is_empty()
            || v == self.null
            || v.contains(self.delimiter)
            || v.contains(['"', '\n', '\r']);
        if needs_quotes {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_copy_to(sql: &str) -> Result<Option<CopyOut>> {
        super::parse_copy_to(&crate::sql::words(sql)?)
    }

    #[test]
    fn parses_table_and_query_forms() {
        let c = parse_copy_to("copy t (a, b) to stdout with (format csv, header, null 'NA')")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.source,
            CopySource::Table {
                name: RelationName::bare("t"),
                columns: Some(vec!["a".into(), "b".into()])
            }
        );
        assert!(c.csv && c.header);
        assert_eq!((c.delimiter, c.null.as_str()), (',', "NA"));
        let q = parse_copy_to("COPY (select a from t where b = ')') TO STDOUT")
            .unwrap()
            .unwrap();
        assert_eq!(
            q.query().unwrap().to_string(),
            "SELECT a FROM t WHERE b = ')'"
        );
        assert_eq!((q.delimiter, q.null.as_str(), q.csv), ('\t', "\\N", false));
        assert_eq!(parse_copy_to("copy t from stdin").unwrap(), None);
        assert_eq!(
            c.query().unwrap().to_string(),
            "SELECT \"a\", \"b\" FROM \"t\""
        );
    }

    #[test]
    fn encodes_text_and_csv_like_postgresql() {
        let mut o = parse_copy_to("copy t to stdout").unwrap().unwrap();
        assert_eq!(
            o.line(&[Some("a\tb\\c\nd".into()), None, Some(String::new())]),
            "a\\tb\\\\c\\nd\t\\N\t\n"
        );
        o = parse_copy_to("copy t to stdout csv header")
            .unwrap()
            .unwrap();
        assert_eq!(
            o.line(&[
                Some("x,y".into()),
                None,
                Some(String::new()),
                Some("q\"".into())
            ]),
            "\"x,y\",,\"\",\"q\"\"\"\n"
        );
        assert_eq!(
            o.header_line(&Schema::new(vec![arrow::datatypes::Field::new(
                "a b",
                arrow::datatypes::DataType::Int32,
                true
            )])),
            Some("a b\n".to_string())
        );
        assert_eq!(
            parse_copy_to("copy t to '/tmp/x'").unwrap_err().sqlstate(),
            "0A000"
        );
    }
}
