//! Parsing Redshift's `COPY`:
//!
//! ```sql
//! COPY table [(col, ...)] FROM '/path/file-or-dir-or-glob'
//!     [FORMAT [AS]] {CSV | PARQUET} | CSV [QUOTE [AS] 'q']
//!     [DELIMITER [AS] 'c'] [IGNOREHEADER [AS] n] [NULL [AS] 's']
//!     [EMPTYASNULL] [BLANKSASNULL] [EXPLICIT_IDS] [GZIP] [MAXERROR [AS] n]
//!     [IAM_ROLE '...'] [REGION [AS] '...'] [CREDENTIALS '...']   -- accepted, unused locally
//!     [DATEFORMAT [AS] 'auto'] [TIMEFORMAT [AS] 'auto']
//! ```
//!
//! Without a format, Redshift reads pipe-delimited text; so do we.

use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::names::RelationName;
use super::{ident, keyword};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// Delimited text without CSV quoting (Redshift's default format).
    Text,
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: Format,
    pub delimiter: u8,
    pub quote: u8,
    pub ignore_header: u64,
    pub null_as: String,
    pub empty_as_null: bool,
    /// `EXPLICIT_IDS`: the data holds the values of the table's IDENTITY column.
    pub explicit_ids: bool,
    pub blanks_as_null: bool,
    pub gzip: bool,
    pub max_error: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStatement {
    pub table: RelationName,
    pub columns: Option<Vec<String>>,
    /// File, directory or glob; empty for `FROM STDIN`.
    pub source: String,
    /// `FROM STDIN`: the client sends the rows (PostgreSQL's COPY sub-protocol).
    pub stdin: bool,
    pub options: CopyOptions,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// Parses a `COPY ... FROM` from its significant tokens.
pub fn parse_copy(t: &[Token]) -> Result<CopyStatement> {
    let mut p = Cursor { t, i: 0 };
    p.expect_kw("COPY")?;
    let mut table = RelationName::bare(p.ident()?);
    if p.peek() == Some(&Token::Period) {
        p.i += 1;
        table = RelationName::qualified(table.name, p.ident()?);
    }
    let mut columns = None;
    if p.peek() == Some(&Token::LParen) {
        p.i += 1;
        let mut cols = Vec::new();
        loop {
            cols.push(p.ident()?);
            match p.next() {
                Some(Token::Comma) => {}
                Some(Token::RParen) => break,
                other => {
                    return Err(syntax(format!(
                        "expected , or ) in column list, found {}",
                        show(other)
                    )));
                }
            }
        }
        columns = Some(cols);
    }
    p.expect_kw("FROM")?;
    let mut stdin = false;
    let source = match p.next() {
        Some(Token::SingleQuotedString(s)) => s.clone(),
        Some(t) if keyword(t).as_deref() == Some("STDIN") => {
            stdin = true;
            String::new()
        }
        other => {
            return Err(syntax(format!(
                "expected a quoted file path after FROM, found {}",
                show(other)
            )));
        }
    };
    let mut o = CopyOptions {
        format: Format::Text,
        delimiter: b'|',
        quote: b'"',
        ignore_header: 0,
        null_as: "\\N".to_string(),
        empty_as_null: false,
        explicit_ids: false,
        blanks_as_null: false,
        gzip: false,
        max_error: 0,
    };
    let mut delimiter_set = false;
    if stdin {
        // PostgreSQL's text format, which psql's \copy and drivers send by default.
        o.delimiter = b'\t';
        delimiter_set = true;
        // PostgreSQL's option list: `[WITH] (FORMAT csv, HEADER true, DELIMITER ',', ...)`.
        if p.peek_kw("WITH") {
            p.i += 1;
        }
        if p.peek() == Some(&Token::LParen) {
            p.i += 1;
            delimiter_set = parse_pg_options(&mut p, &mut o)?;
        }
    }
    while let Some(tok) = p.next() {
        let Some(kw) = keyword(tok) else {
            return Err(syntax(format!("unexpected {tok} in COPY options")));
        };
        match kw.as_str() {
            "FORMAT" => {
                p.skip_kw("AS");
                let f = p
                    .next()
                    .and_then(keyword)
                    .ok_or_else(|| syntax("FORMAT needs a format name"))?;
                o.format = format_named(&f, &mut p)?;
            }
            "CSV" => {
                o.format = Format::Csv;
                if p.peek_kw("QUOTE") {
                    p.i += 1;
                    p.skip_kw("AS");
                    o.quote = p.single_char("QUOTE")?;
                }
            }
            "PARQUET" => o.format = Format::Parquet,
            "JSON" | "AVRO" | "ORC" | "FIXEDWIDTH" | "SHAPEFILE" => {
                o.format = format_named(&kw, &mut p)?;
            }
            "DELIMITER" => {
                p.skip_kw("AS");
                o.delimiter = p.single_char("DELIMITER")?;
                delimiter_set = true;
            }
            "IGNOREHEADER" => {
                p.skip_kw("AS");
                o.ignore_header = p.number("IGNOREHEADER")?;
            }
            "NULL" => {
                p.skip_kw("AS");
                o.null_as = p.string("NULL AS")?;
            }
            "MAXERROR" => {
                p.skip_kw("AS");
                o.max_error = p.number("MAXERROR")?;
            }
            "EMPTYASNULL" => o.empty_as_null = true,
            "EXPLICIT_IDS" => o.explicit_ids = true,
            "BLANKSASNULL" => o.blanks_as_null = true,
            "GZIP" => o.gzip = true,
            "IAM_ROLE" | "CREDENTIALS" | "ACCESS_KEY_ID" | "SECRET_ACCESS_KEY"
            | "SESSION_TOKEN" => {
                p.next();
            }
            "REGION" => {
                p.skip_kw("AS");
                p.next();
            }
            "DATEFORMAT" | "TIMEFORMAT" => {
                p.skip_kw("AS");
                let v = p.string(&kw)?;
                if !v.eq_ignore_ascii_case("auto") {
                    return Err(Error::sql(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("{kw} '{v}' is not supported yet; only 'auto' (ISO formats)"),
                    ));
                }
            }
            "COMPUPDATE" | "STATUPDATE" => {
                if p.peek_kw("ON")
                    || p.peek_kw("OFF")
                    || p.peek_kw("TRUE")
                    || p.peek_kw("FALSE")
                    || p.peek_kw("PRESET")
                {
                    p.i += 1;
                }
            }
            other => {
                return Err(Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("COPY option {other} is not supported yet"),
                ));
            }
        }
    }
    if o.format == Format::Csv && !delimiter_set {
        o.delimiter = b',';
    }
    if stdin && o.format == Format::Parquet {
        return Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "COPY FROM STDIN takes text or CSV rows, not Parquet",
        ));
    }
    if o.format == Format::Parquet && (delimiter_set || o.ignore_header > 0) {
        return Err(syntax(
            "DELIMITER and IGNOREHEADER do not apply to FORMAT AS PARQUET",
        ));
    }
    Ok(CopyStatement {
        table,
        columns,
        source,
        stdin,
        options: o,
    })
}

/// PostgreSQL's parenthesized COPY options, after the `(`. Returns whether a delimiter was
/// given (the text format keeps the tab, CSV switches to a comma otherwise).
fn parse_pg_options(p: &mut Cursor, o: &mut CopyOptions) -> Result<bool> {
    let mut delimiter_set = false;
    let mut delimiter = o.delimiter;
    loop {
        let name = p
            .next()
            .and_then(keyword)
            .ok_or_else(|| syntax("expected a COPY option name"))?;
        match name.as_str() {
            "FORMAT" => {
                let f = p
                    .next()
                    .and_then(keyword)
                    .ok_or_else(|| syntax("FORMAT needs csv or text"))?;
                o.format = match f.as_str() {
                    "CSV" => Format::Csv,
                    "TEXT" => Format::Text,
                    other => {
                        return Err(Error::sql(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!("COPY FROM STDIN format {other} is not supported"),
                        ));
                    }
                };
            }
            "HEADER" => {
                let on = match p.peek().and_then(keyword).as_deref() {
                    Some("TRUE" | "ON") => {
                        p.i += 1;
                        true
                    }
                    Some("FALSE" | "OFF") => {
                        p.i += 1;
                        false
                    }
                    _ => match p.peek() {
                        Some(Token::Number(n, _)) => {
                            let on = n != "0";
                            p.i += 1;
                            on
                        }
                        _ => true,
                    },
                };
                o.ignore_header = u64::from(on);
            }
            "DELIMITER" => {
                delimiter = p.single_char("DELIMITER")?;
                delimiter_set = true;
            }
            "NULL" => o.null_as = p.string("NULL")?,
            "QUOTE" => o.quote = p.single_char("QUOTE")?,
            other => {
                return Err(Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("COPY option {other} is not supported yet"),
                ));
            }
        }
        match p.next() {
            Some(Token::Comma) => {}
            Some(Token::RParen) => break,
            other => {
                return Err(syntax(format!(
                    "expected , or ) in COPY options, found {}",
                    show(other)
                )));
            }
        }
    }
    if o.format == Format::Csv {
        o.delimiter = if delimiter_set { delimiter } else { b',' };
        if o.null_as == "\\N" {
            // CSV's NULL is the unquoted empty string.
            o.null_as = String::new();
        }
    } else {
        o.delimiter = delimiter;
    }
    Ok(true)
}

fn format_named(name: &str, p: &mut Cursor) -> Result<Format> {
    match name {
        "CSV" => Ok(Format::Csv),
        "PARQUET" => Ok(Format::Parquet),
        other => {
            // e.g. JSON 'auto': consume the argument for a clean message.
            if matches!(p.peek(), Some(Token::SingleQuotedString(_))) {
                p.i += 1;
            }
            Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("COPY FORMAT {other} is not supported yet (use CSV or PARQUET)"),
            ))
        }
    }
}

fn show(t: Option<&Token>) -> String {
    t.map(|t| t.to_string())
        .unwrap_or_else(|| "end of statement".into())
}

struct Cursor<'a> {
    t: &'a [Token],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.t.get(self.i)
    }
    fn next(&mut self) -> Option<&'a Token> {
        let t = self.t.get(self.i);
        self.i += 1;
        t
    }
    fn peek_kw(&self, kw: &str) -> bool {
        self.peek().and_then(keyword).as_deref() == Some(kw)
    }
    fn skip_kw(&mut self, kw: &str) {
        if self.peek_kw(kw) {
            self.i += 1;
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        match self.next() {
            Some(t) if keyword(t).as_deref() == Some(kw) => Ok(()),
            other => Err(syntax(format!("expected {kw}, found {}", show(other)))),
        }
    }
    fn ident(&mut self) -> Result<String> {
        let t = self.next();
        t.and_then(ident)
            .ok_or_else(|| syntax(format!("expected a name, found {}", show(t))))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        match self.next() {
            Some(Token::SingleQuotedString(s)) => Ok(s.clone()),
            other => Err(syntax(format!(
                "{what} needs a quoted string, found {}",
                show(other)
            ))),
        }
    }
    fn single_char(&mut self, what: &str) -> Result<u8> {
        let s = self.string(what)?;
        let s = if s == "\\t" { "\t".to_string() } else { s };
        match s.as_bytes() {
            [b] => Ok(*b),
            _ => Err(syntax(format!(
                "{what} must be a single one-byte character"
            ))),
        }
    }
    fn number(&mut self, what: &str) -> Result<u64> {
        match self.next() {
            Some(Token::Number(n, _)) => n
                .parse()
                .map_err(|_| syntax(format!("{what} needs a non-negative integer"))),
            other => Err(syntax(format!(
                "{what} needs a number, found {}",
                show(other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_copy(sql: &str) -> Result<CopyStatement> {
        super::parse_copy(&crate::sql::words(sql)?)
    }

    #[test]
    fn parses_copy_from_stdin_with_postgres_options() {
        let text = parse_copy("COPY t FROM STDIN").unwrap();
        assert!(text.stdin);
        assert_eq!(text.options.format, Format::Text);
        assert_eq!(text.options.delimiter, b'\t');
        assert_eq!(text.options.null_as, "\\N");

        let csv = parse_copy("COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true)").unwrap();
        assert_eq!(csv.options.format, Format::Csv);
        assert_eq!(csv.options.delimiter, b',');
        assert_eq!(csv.options.ignore_header, 1);
        assert_eq!(csv.options.null_as, "");

        let piped = parse_copy("copy t from stdin (format csv, delimiter '|', null 'NA')").unwrap();
        assert_eq!(piped.options.delimiter, b'|');
        assert_eq!(piped.options.null_as, "NA");

        let err = parse_copy("COPY t FROM STDIN (FORMAT binary)").unwrap_err();
        assert_eq!(err.sqlstate(), "0A000");
        let err = parse_copy("COPY t FROM STDIN FORMAT AS PARQUET").unwrap_err();
        assert_eq!(err.sqlstate(), "0A000");
    }

    #[test]
    fn parses_redshift_csv_options() {
        let c = parse_copy(
            "COPY public.t (a, b) FROM '/data/x.csv' FORMAT AS CSV IGNOREHEADER 1 DELIMITER ';' NULL AS 'NA' MAXERROR 5",
        )
        .unwrap();
        assert_eq!(c.table, RelationName::qualified("public", "t"));
        assert_eq!(c.columns, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(c.options.format, Format::Csv);
        assert_eq!(c.options.delimiter, b';');
        assert_eq!(c.options.ignore_header, 1);
        assert_eq!(c.options.null_as, "NA");
        assert_eq!(c.options.max_error, 5);
    }

    #[test]
    fn csv_defaults_to_comma_and_text_to_pipe() {
        assert_eq!(
            parse_copy("copy t from '/x' csv")
                .unwrap()
                .options
                .delimiter,
            b','
        );
        assert_eq!(
            parse_copy("copy t from '/x'").unwrap().options.delimiter,
            b'|'
        );
        assert_eq!(
            parse_copy("copy t from '/x' format as parquet")
                .unwrap()
                .options
                .format,
            Format::Parquet
        );
    }

    #[test]
    fn unsupported_options_say_so() {
        let e = parse_copy("copy t from '/x' format as json 'auto'").unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        let e = parse_copy("copy t from '/x' bogus").unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
    }
}
