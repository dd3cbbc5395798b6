//! The statement front end: a query string is tokenized once, cut into statements at
//! top-level semicolons, and each statement is parsed once into a typed [`Statement`].
//! Everything after this module (the session's dispatch, the pgwire and Flight SQL
//! handlers, planning) works on these values; nothing downstream looks at SQL text again.
//!
//! Statements sqlparser's PostgreSQL dialect parses as Blueshift means them (queries,
//! INSERT) are kept as sqlparser's AST and handed to DataFusion's planner. Statements with
//! Redshift syntax sqlparser does not take, or takes only in part (Redshift's table
//! attributes in any order, COPY's options, Redshift's user options, the metadata SHOWs),
//! are parsed from the same tokens by the family's own parser (`sql::ddl`, `sql::copy`, ...).
//!
//! This module must not execute anything: it only turns text into values.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use blueshift_common::error::sqlstate;

use super::copy::CopyStatement;
use super::copy_out::CopyOut;
use super::cursor::CursorStatement;
use super::ddl::CreateTable;
use super::names::RelationName;
use super::settings::SetStatement;
use super::show::ShowCommand;
use super::transaction::TxStatement;
use super::users::UserStatement;
use super::{is_blank, keyword};
use crate::error::{Error, Result};

/// sqlparser's AST of a statement DataFusion plans.
pub type Ast = ast::Statement;

/// One statement, parsed.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `SELECT`, `WITH`, `VALUES`, `TABLE t`, `(query)`.
    Query(Box<Ast>),
    /// `INSERT INTO ... VALUES | SELECT`.
    Insert(Box<Ast>),
    /// `EXPLAIN [VERBOSE] [ANALYZE] statement`: the statement is a query or an INSERT.
    Explain {
        analyze: bool,
        statement: Box<Statement>,
    },
    /// `DELETE [FROM] t [USING ...] [WHERE ...]`.
    Delete(Box<Ast>),
    /// `UPDATE t SET ... [FROM ...] [WHERE ...]`.
    Update(Box<Ast>),
    /// `MERGE INTO t USING s ON ... WHEN [NOT] MATCHED THEN ...`.
    Merge(Box<Ast>),
    /// `TRUNCATE [TABLE] t [, ...]`.
    Truncate(Vec<RelationName>),
    CreateTable(Box<CreateTable>),
    /// `ALTER TABLE` (and `ALTER VIEW v RENAME TO`, read as the same statement).
    AlterTable(Box<super::ddl::AlterTable>),
    /// `ALTER TABLE t APPEND FROM s [IGNOREEXTRA | FILLTARGET]`.
    AppendFrom(Box<super::ddl::AppendFrom>),
    DropTable(super::ddl::DropRelations),
    CreateView(Box<super::views::CreateView>),
    DropView(super::ddl::DropRelations),
    Schema(super::schemas::SchemaStatement),
    Comment(super::comment::Comment),
    /// `COPY table FROM 'path' | STDIN ...`.
    CopyFrom(Box<CopyStatement>),
    /// `COPY { table | (query) } TO STDOUT ...`.
    CopyTo(Box<CopyOut>),
    /// `SET` / `RESET` of a setting.
    Set(SetStatement),
    /// `SHOW name` of a setting.
    ShowSetting(String),
    /// Redshift's metadata listings: `SHOW DATABASES | SCHEMAS | TABLES | COLUMNS`.
    Show(ShowCommand),
    Transaction(TxStatement),
    User(UserStatement),
    /// `ALTER CLUSTER REMOVE REPLICA n`.
    Cluster(super::cluster::ClusterStatement),
    /// `GRANT` / `REVOKE`.
    Grant(Box<super::grant::GrantStatement>),
    /// `CREATE | ALTER | DROP GROUP`.
    Group(super::grant::GroupStatement),
    Cursor(CursorStatement),
    /// Statements with nothing to do here (`DISCARD ALL`, `DEALLOCATE`): their tag.
    NoOp(&'static str),
    /// A statement Blueshift recognises but does not run yet: its leading keyword.
    Unsupported(String),
}

impl Statement {
    /// Whether the statement returns rows (for describing prepared statements).
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Statement::Query(_)
                | Statement::Explain { .. }
                | Statement::Show(_)
                | Statement::ShowSetting(_)
        )
    }
}

/// A statement with the text it was parsed from (for logs and system tables).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub text: String,
    /// `text` with its secrets (the quoted string after `PASSWORD`, `CREDENTIALS`,
    /// `ACCESS_KEY_ID`, `SECRET_ACCESS_KEY`, `SESSION_TOKEN`) as `'***'`: what logs show.
    pub redacted: String,
    pub statement: Statement,
}

/// Keywords whose next quoted string is a secret.
const SECRET_BEFORE: [&str; 5] = [
    "PASSWORD",
    "CREDENTIALS",
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "SESSION_TOKEN",
];

/// `sql[start..end]` with each of `secrets` (byte ranges of `sql`) replaced by `'***'`,
/// trimmed as the statement's text is.
fn redact(sql: &str, start: usize, end: usize, secrets: &[(usize, usize)]) -> String {
    let mut out = String::new();
    let mut at = start;
    for &(s, e) in secrets
        .iter()
        .filter(|(s, e)| *s >= start && *e <= end && s < e)
    {
        out.push_str(sql.get(at..s).unwrap_or_default());
        out.push_str("'***'");
        at = e;
    }
    out.push_str(sql.get(at..end).unwrap_or_default());
    out.trim().to_string()
}

/// How `?` is read: PostgreSQL's operator character, or (Flight SQL, ODBC and JDBC style)
/// a positional parameter, numbered `$1, $2, ...` in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionMarks {
    Operator,
    Parameters,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// The dialect every statement is tokenized and parsed with.
static DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

/// Tokenizes a query string (once), keeping each token's position.
fn tokenize(sql: &str, questions: QuestionMarks) -> Result<Vec<TokenWithSpan>> {
    let mut tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(format!("syntax error: {e}")))?;
    if questions == QuestionMarks::Parameters {
        let mut n = 0;
        for t in &mut tokens {
            let is_question = match &t.token {
                Token::Question => true,
                Token::Placeholder(p) => p == "?",
                _ => false,
            };
            if is_question {
                n += 1;
                t.token = Token::Placeholder(format!("${n}"));
            }
        }
    }
    Ok(tokens)
}

/// Parses a query string into its statements (empty ones, and ones of only comments,
/// dropped). A syntax error anywhere fails the whole string, as in PostgreSQL, so that no
/// statement of it runs.
pub fn parse(sql: &str) -> Result<Vec<Parsed>> {
    parse_with(sql, QuestionMarks::Operator)
}

/// [`parse`] with a choice of how `?` is read.
pub fn parse_with(sql: &str, questions: QuestionMarks) -> Result<Vec<Parsed>> {
    let tokens = tokenize(sql, questions)?;
    let offsets = LineOffsets::new(sql);
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut group: Vec<Token> = Vec::new();
    // Byte ranges of secret literals, and whether the last significant token announces one.
    let mut secrets: Vec<(usize, usize)> = Vec::new();
    let mut secret_next = false;
    for t in tokens {
        match t.token {
            Token::SemiColon | Token::EOF => {
                let end = if t.token == Token::EOF {
                    sql.len()
                } else {
                    offsets.offset(sql, t.span.start)
                };
                if !group.is_empty() {
                    let text = sql.get(start..end).unwrap_or_default().trim().to_string();
                    let redacted = redact(sql, start, end, &secrets);
                    let statement = parse_statement(std::mem::take(&mut group))?;
                    out.push(Parsed {
                        text,
                        redacted,
                        statement,
                    });
                }
                start = (end + 1).min(sql.len());
                secret_next = false;
            }
            ref tok if is_blank(tok) => {}
            tok => {
                if secret_next && matches!(tok, Token::SingleQuotedString(_)) {
                    secrets.push((
                        offsets.offset(sql, t.span.start),
                        offsets.offset(sql, t.span.end),
                    ));
                }
                secret_next = keyword(&tok).is_some_and(|k| SECRET_BEFORE.contains(&k.as_str()));
                group.push(tok);
            }
        }
    }
    if !group.is_empty() {
        let text = sql.get(start..).unwrap_or_default().trim().to_string();
        out.push(Parsed {
            text,
            redacted: redact(sql, start, sql.len(), &secrets),
            statement: parse_statement(group)?,
        });
    }
    Ok(out)
}

/// Parses a string that must hold at most one statement (a prepared statement).
pub fn parse_one(sql: &str, questions: QuestionMarks) -> Result<Option<Parsed>> {
    let mut statements = parse_with(sql, questions)?;
    if statements.len() > 1 {
        return Err(syntax(
            "cannot insert multiple commands into a prepared statement",
        ));
    }
    Ok(statements.pop())
}

/// Byte offsets of line starts, to turn token positions (line, column in characters) into
/// byte offsets of the query string.
struct LineOffsets(Vec<usize>);

impl LineOffsets {
    fn new(sql: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineOffsets(starts)
    }

    fn offset(&self, sql: &str, at: Location) -> usize {
        let line = (at.line as usize).saturating_sub(1);
        let Some(&line_start) = self.0.get(line) else {
            return sql.len();
        };
        let column = (at.column as usize).saturating_sub(1);
        sql[line_start..]
            .char_indices()
            .nth(column)
            .map(|(i, _)| line_start + i)
            .unwrap_or(sql.len())
    }
}

/// A parser over some of a statement's tokens.
pub fn parser_over(tokens: Vec<Token>) -> Parser<'static> {
    Parser::new(&DIALECT).with_tokens(tokens)
}

/// Parses tokens that must form exactly one sqlparser statement.
pub fn parse_ast(tokens: Vec<Token>) -> Result<Ast> {
    let mut p = parser_over(tokens);
    let statement = p
        .parse_statement()
        .map_err(|e| syntax(format!("syntax error: {e}")))?;
    expect_end(&p)?;
    Ok(statement)
}

/// Parses tokens that must form exactly one expression.
pub fn parse_expr(tokens: Vec<Token>) -> Result<ast::Expr> {
    let mut p = parser_over(tokens);
    let expr = p
        .parse_expr()
        .map_err(|e| syntax(format!("syntax error: {e}")))?;
    expect_end(&p)?;
    Ok(expr)
}

/// Parses tokens that must form exactly one query.
/// A query stored as text by the catalog (a view's definition).
pub fn parse_stored_query(sql: &str) -> Result<Ast> {
    let tokens = tokenize(sql, QuestionMarks::Operator)?
        .into_iter()
        .map(|t| t.token)
        .filter(|t| !is_blank(t))
        .collect();
    Ok(Ast::Query(parse_query(tokens)?))
}

/// An expression stored as text by the catalog (a column's `DEFAULT`).
pub fn parse_stored_expr(sql: &str) -> Result<ast::Expr> {
    let tokens = tokenize(sql, QuestionMarks::Operator)?
        .into_iter()
        .map(|t| t.token)
        .filter(|t| !is_blank(t))
        .collect();
    parse_expr(tokens)
}

pub fn parse_query(tokens: Vec<Token>) -> Result<Box<ast::Query>> {
    let mut p = parser_over(tokens);
    let query = p
        .parse_query()
        .map_err(|e| syntax(format!("syntax error: {e}")))?;
    expect_end(&p)?;
    Ok(query)
}

fn expect_end(p: &Parser) -> Result<()> {
    match p.peek_token().token {
        Token::EOF => Ok(()),
        t => Err(syntax(format!("syntax error at or near \"{t}\""))),
    }
}

/// Parses one statement from its significant tokens (no whitespace, no `;`).
fn parse_statement(t: Vec<Token>) -> Result<Statement> {
    let kw = |i: usize| t.get(i).and_then(keyword).unwrap_or_default();
    let k0 = kw(0);
    Ok(match k0.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => query(t)?,
        "" if t.first() == Some(&Token::LParen) => query(t)?,
        "INSERT" => match parse_ast(t)? {
            s @ Ast::Insert(_) => Statement::Insert(Box::new(s)),
            _ => return Err(syntax("expected INSERT INTO ... VALUES / SELECT")),
        },
        "EXPLAIN" => explain(t)?,
        "DELETE" => match parse_ast(t)? {
            s @ Ast::Delete(_) => Statement::Delete(Box::new(s)),
            _ => return Err(syntax("expected DELETE FROM")),
        },
        "UPDATE" => match parse_ast(t)? {
            s @ Ast::Update(_) => Statement::Update(Box::new(s)),
            _ => return Err(syntax("expected UPDATE ... SET")),
        },
        "MERGE" => match parse_ast(t)? {
            s @ Ast::Merge(_) => Statement::Merge(Box::new(s)),
            _ => return Err(syntax("expected MERGE INTO ... USING ... ON ...")),
        },
        "TRUNCATE" => match parse_ast(t)? {
            Ast::Truncate(tr) => Statement::Truncate(
                tr.table_names
                    .iter()
                    .map(|n| super::ddl::table_name(&n.name))
                    .collect::<Result<_>>()?,
            ),
            _ => return Err(syntax("expected TRUNCATE [TABLE] name")),
        },
        "CREATE" if kw(1) == "TABLE" => {
            Statement::CreateTable(Box::new(super::ddl::parse_create_table(&t)?))
        }
        "CREATE" if matches!(kw(1).as_str(), "TEMP" | "TEMPORARY") && kw(2) == "TABLE" => {
            Statement::CreateTable(Box::new(super::ddl::parse_create_table(&t)?))
        }
        "DROP" if kw(1) == "TABLE" => {
            Statement::DropTable(super::ddl::parse_drop(t, ast::ObjectType::Table)?)
        }
        "DROP" if kw(1) == "VIEW" => {
            Statement::DropView(super::ddl::parse_drop(t, ast::ObjectType::View)?)
        }
        "CREATE" if kw(1) == "VIEW" || (kw(1) == "OR" && kw(2) == "REPLACE" && kw(3) == "VIEW") => {
            Statement::CreateView(Box::new(super::views::parse_create_view(&t)?))
        }
        "CREATE" | "DROP" if kw(1) == "SCHEMA" => {
            Statement::Schema(super::schemas::parse_schema_statement(t)?)
        }
        "ALTER" if kw(1) == "VIEW" => {
            // `ALTER VIEW v RENAME TO w` is `ALTER TABLE v RENAME TO w` (PostgreSQL takes
            // either for either); sqlparser reads only the TABLE form.
            let mut t = t;
            t[1] = Token::make_keyword("TABLE");
            match parse_ast(t)? {
                Ast::AlterTable(at) => {
                    Statement::AlterTable(Box::new(super::ddl::alter_table(&at)?))
                }
                _ => return Err(syntax("expected ALTER VIEW ... RENAME TO")),
            }
        }
        "ALTER" if kw(1) == "CLUSTER" => {
            Statement::Cluster(super::cluster::parse_cluster_statement(&t)?)
        }
        "GRANT" | "REVOKE" => Statement::Grant(Box::new(super::grant::parse_grant(&t)?)),
        "CREATE" | "ALTER" | "DROP" if kw(1) == "GROUP" => {
            Statement::Group(super::grant::parse_group(&t)?)
        }
        "CREATE" | "ALTER" | "DROP" if kw(1) == "USER" => {
            Statement::User(super::users::parse_user_statement(&t)?)
        }
        "ALTER"
            if kw(1) == "TABLE" && t.iter().any(|w| keyword(w).as_deref() == Some("APPEND")) =>
        {
            Statement::AppendFrom(Box::new(super::ddl::parse_append(t)?))
        }
        "ALTER" if kw(1) == "TABLE" => match parse_ast(t)? {
            Ast::AlterTable(at) => Statement::AlterTable(Box::new(super::ddl::alter_table(&at)?)),
            _ => return Err(syntax("expected ALTER TABLE")),
        },
        "COPY" => match super::copy_out::parse_copy_to(&t)? {
            Some(out) => Statement::CopyTo(Box::new(out)),
            None => Statement::CopyFrom(Box::new(super::copy::parse_copy(&t)?)),
        },
        "SET" | "RESET" => Statement::Set(super::settings::parse_set(&t)?),
        "SHOW" => match super::show::parse_show(&t)? {
            Some(cmd) => Statement::Show(cmd),
            None => Statement::ShowSetting(super::settings::parse_show_setting(&t)?),
        },
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE" => {
            Statement::Transaction(super::transaction::parse(&t)?)
        }
        "DECLARE" | "FETCH" | "CLOSE" | "MOVE" => {
            Statement::Cursor(super::cursor::parse_cursor_statement(&t)?)
        }
        "COMMENT" => Statement::Comment(super::comment::parse_comment(t)?),
        "DISCARD" => Statement::NoOp("DISCARD"),
        "DEALLOCATE" => Statement::NoOp("DEALLOCATE"),
        "ALTER" | "VACUUM" | "ANALYZE" | "CREATE" | "DROP" | "UNLOAD" | "CALL" | "PREPARE"
        | "EXECUTE" | "LOCK" | "LISTEN" | "NOTIFY" => Statement::Unsupported(k0),
        _ => {
            let near = t.first().map(|t| t.to_string()).unwrap_or_default();
            return Err(syntax(format!("syntax error at or near \"{near}\"")));
        }
    })
}

fn query(t: Vec<Token>) -> Result<Statement> {
    match parse_ast(t)? {
        s @ Ast::Query(_) => Ok(Statement::Query(Box::new(s))),
        _ => Err(syntax("expected a query")),
    }
}

/// `EXPLAIN [VERBOSE] [ANALYZE] [VERBOSE] statement`.
fn explain(t: Vec<Token>) -> Result<Statement> {
    let mut skip = 1;
    let mut analyze = false;
    while let Some(k) = t.get(skip).and_then(keyword) {
        match k.as_str() {
            "VERBOSE" => skip += 1,
            "ANALYZE" => {
                analyze = true;
                skip += 1;
            }
            _ => break,
        }
    }
    let inner = parse_statement(t[skip.min(t.len())..].to_vec())?;
    match (&inner, analyze) {
        (Statement::Query(_), _) | (Statement::Insert(_), false) => Ok(Statement::Explain {
            analyze,
            statement: Box::new(inner),
        }),
        (Statement::Insert(_), true) => Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "EXPLAIN ANALYZE supports SELECT statements",
        )),
        _ => Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "EXPLAIN supports SELECT and INSERT statements",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_for_logs() {
        let parsed = parse(
            "create user u password 'Secret123';\n\
             alter user u with password 'Other123' createuser; select 'password' as x;\
             select 1 as password, 'kept'",
        )
        .unwrap();
        let redacted: Vec<&str> = parsed.iter().map(|p| p.redacted.as_str()).collect();
        assert_eq!(
            redacted,
            [
                "create user u password '***'",
                "alter user u with password '***' createuser",
                "select 'password' as x",
                "select 1 as password, 'kept'",
            ]
        );
        assert_eq!(parsed[0].text, "create user u password 'Secret123'");
    }

    fn texts(sql: &str) -> Vec<String> {
        parse(sql).unwrap().into_iter().map(|p| p.text).collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        assert_eq!(
            texts("select 1; select ';' ; -- c\n ;"),
            vec!["select 1", "select ';'"]
        );
        assert_eq!(
            texts("select 'é';\nselect\n  2"),
            vec!["select 'é'", "select\n  2"]
        );
        assert!(parse("  -- only a comment\n").unwrap().is_empty());
    }

    #[test]
    fn parses_each_family() {
        let kinds: Vec<&str> = parse(
            "create table t (a int) diststyle all; copy t from '/x' csv; \
             copy t to stdout; insert into t values (1); (select 1); set search_path to x; \
             show search_path; show tables from schema dev.public; begin; \
             create user u password disable; declare c cursor for select 1; discard all; \
             explain select 1; delete from t; update t set a = 1; truncate t; vacuum; \
             create schema s; create or replace view s.v as select 1; drop view v cascade",
        )
        .unwrap()
        .iter()
        .map(|p| match &p.statement {
            Statement::CreateTable(_) => "create",
            Statement::CopyFrom(_) => "copy from",
            Statement::CopyTo(_) => "copy to",
            Statement::Insert(_) => "insert",
            Statement::Query(_) => "query",
            Statement::Set(_) => "set",
            Statement::ShowSetting(_) => "show setting",
            Statement::Show(_) => "show",
            Statement::Transaction(_) => "tx",
            Statement::User(_) => "user",
            Statement::Cursor(_) => "cursor",
            Statement::Cluster(_) => "cluster",
            Statement::Grant(_) => "grant",
            Statement::Group(_) => "group",
            Statement::NoOp(_) => "noop",
            Statement::Explain { .. } => "explain",
            Statement::Unsupported(_) => "unsupported",
            Statement::DropTable { .. } => "drop",
            Statement::Delete(_) => "delete",
            Statement::Update(_) => "update",
            Statement::Truncate(_) => "truncate",
            Statement::Merge(_) => "merge",
            Statement::AlterTable(_) => "alter",
            Statement::AppendFrom(_) => "append",
            Statement::CreateView(_) => "create view",
            Statement::DropView(_) => "drop view",
            Statement::Schema(_) => "schema",
            Statement::Comment(_) => "comment",
        })
        .collect();
        assert_eq!(
            kinds,
            vec![
                "create",
                "copy from",
                "copy to",
                "insert",
                "query",
                "set",
                "show setting",
                "show",
                "tx",
                "user",
                "cursor",
                "noop",
                "explain",
                "delete",
                "update",
                "truncate",
                "unsupported",
                "schema",
                "create view",
                "drop view"
            ]
        );
    }

    #[test]
    fn a_syntax_error_anywhere_fails_the_whole_string() {
        assert_eq!(parse("select 1; selec 2").unwrap_err().sqlstate(), "42601");
        assert_eq!(parse("select 1 1 1").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn question_marks_become_numbered_parameters() {
        let p = parse_one("select ? + ?", QuestionMarks::Parameters)
            .unwrap()
            .unwrap();
        let Statement::Query(q) = p.statement else {
            panic!("not a query");
        };
        assert_eq!(q.to_string(), "SELECT $1 + $2");
        assert!(parse_one("select 1; select 2", QuestionMarks::Operator).is_err());
    }
}
