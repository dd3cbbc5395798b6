//! Redshift DDL: `CREATE TABLE` with `DISTSTYLE {AUTO|EVEN|KEY|ALL}`, column-level or
//! table-level `DISTKEY(col)`, `[COMPOUND|INTERLEAVED] SORTKEY(cols)`, column `ENCODE`, in any
//! order Redshift accepts; `DROP TABLE [IF EXISTS]`.
//!
//! Redshift's table attributes are lifted out of the statement's tokens first (sqlparser
//! accepts them only in one fixed order and not at column level), the remaining tokens are
//! parsed by sqlparser's PostgreSQL dialect.

use blueshift_common::error::sqlstate;
use blueshift_common::hash::SLICE_HASH_VERSION;
use blueshift_common::types::{
    ColumnDef, ColumnType, DEFAULT_VARCHAR_LEN, DistStyle, MAX_VARCHAR_LEN, TableDef,
};
use datafusion::sql::sqlparser::ast::{
    CharacterLength, ColumnOption, DataType, ExactNumberInfo, ObjectName, ObjectType, Query,
    Statement, TimezoneInfo,
};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::names::{RelationName, normalize_ident};
use super::statement::parse_ast;
use super::{ident, keyword};
use crate::error::{Error, Result};

/// A parsed `CREATE TABLE`, before ids are assigned.
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub name: RelationName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub dist: DistStyle,
    pub dist_auto: bool,
    pub sort_key: Vec<usize>,
    /// `CREATE TABLE ... AS <query>`: columns come from the query.
    pub query: Option<Box<Query>>,
    /// `CREATE TABLE t (LIKE parent)`: columns (and, unless given, the distribution and
    /// sort keys) come from the parent.
    pub like: Option<RelationName>,
    /// `CREATE TEMP | TEMPORARY TABLE`.
    pub temporary: bool,
    attrs: Attributes,
}

#[derive(Debug, Clone, Default)]
struct Attributes {
    diststyle: Option<String>,
    distkey: Option<String>,
    sortkey: Vec<String>,
}

impl CreateTable {
    /// The table definition, with the given id, in `schema`, owned by `owner`.
    pub fn into_def(self, id: u64, schema: String, owner: &str) -> TableDef {
        TableDef {
            owner: owner.to_string(),
            id,
            schema,
            name: self.name.name,
            columns: self.columns,
            dist: self.dist,
            dist_auto: self.dist_auto,
            sort_key: self.sort_key,
            segments: Default::default(),
            hash_version: SLICE_HASH_VERSION,
            dropped_columns: vec![],
            temporary: self.temporary,
        }
    }

    /// For `(LIKE parent)`: the parent's columns with their NOT NULL, and its distribution
    /// and sort keys unless the statement names its own (as Redshift does).
    pub fn like_table(mut self, parent: &TableDef) -> Result<Self> {
        self.columns = parent.columns.clone();
        let own = self.attrs.diststyle.is_some()
            || self.attrs.distkey.is_some()
            || !self.attrs.sortkey.is_empty();
        if own {
            let (dist, auto, sort) = resolve_attributes(&self.attrs, &self.columns)?;
            self.dist = dist;
            self.dist_auto = auto;
            self.sort_key = sort;
        } else {
            self.dist = parent.dist.clone();
            self.dist_auto = parent.dist_auto;
            self.sort_key = parent.sort_key.clone();
        }
        Ok(self)
    }

    /// For CTAS: sets the columns from the query's result and resolves the attributes.
    pub fn with_columns(mut self, columns: Vec<ColumnDef>) -> Result<Self> {
        self.columns = columns;
        let (dist, auto, sort) = resolve_attributes(&self.attrs, &self.columns)?;
        self.dist = dist;
        self.dist_auto = auto;
        self.sort_key = sort;
        Ok(self)
    }
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// Parses a `CREATE TABLE` statement from its significant tokens.
pub fn parse_create_table(tokens: &[Token]) -> Result<CreateTable> {
    let (rest, attrs) = lift_attributes(tokens)?;
    let Statement::CreateTable(ct) = parse_ast(rest)? else {
        return Err(syntax("expected CREATE TABLE"));
    };
    let name = table_name(&ct.name)?;
    let mut columns = Vec::with_capacity(ct.columns.len());
    for c in &ct.columns {
        let cname = normalize_ident(&c.name);
        if columns.iter().any(|x: &ColumnDef| x.name == cname) {
            return Err(Error::sql(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{cname}\" specified more than once"),
            ));
        }
        let mut nullable = true;
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => nullable = true,
                ColumnOption::PrimaryKey(_) => nullable = false,
                ColumnOption::Unique(_) | ColumnOption::ForeignKey(_) => {}
                other => {
                    return Err(Error::sql(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("column option {other} is not supported yet"),
                    ));
                }
            }
        }
        columns.push(ColumnDef {
            name: cname,
            ty: column_type(&c.data_type)?,
            nullable,
        });
    }
    let like = match &ct.like {
        Some(
            datafusion::sql::sqlparser::ast::CreateTableLikeKind::Parenthesized(l)
            | datafusion::sql::sqlparser::ast::CreateTableLikeKind::Plain(l),
        ) => Some(table_name(&l.name)?),
        None => None,
    };
    if like.is_some() && (!columns.is_empty() || ct.query.is_some()) {
        return Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "CREATE TABLE (LIKE ...) with other columns or AS is not supported",
        ));
    }
    if ct.query.is_none() && like.is_none() && columns.is_empty() {
        return Err(syntax("a table needs at least one column"));
    }
    let (dist, dist_auto, sort_key) =
        if (ct.query.is_some() || like.is_some()) && columns.is_empty() {
            (DistStyle::Even, true, vec![])
        } else {
            resolve_attributes(&attrs, &columns)?
        };
    Ok(CreateTable {
        name,
        if_not_exists: ct.if_not_exists,
        columns,
        dist,
        dist_auto,
        sort_key,
        query: ct.query,
        like,
        temporary: ct.temporary,
        attrs,
    })
}

fn resolve_attributes(
    attrs: &Attributes,
    columns: &[ColumnDef],
) -> Result<(DistStyle, bool, Vec<usize>)> {
    let find = |name: &str| {
        columns.iter().position(|c| c.name == name).ok_or_else(|| {
            Error::sql(
                sqlstate::UNDEFINED_COLUMN,
                format!("column \"{name}\" named in a table attribute does not exist"),
            )
        })
    };
    let distkey = attrs.distkey.as_deref().map(find).transpose()?;
    let (dist, auto) = match (attrs.diststyle.as_deref(), distkey) {
        (Some("KEY"), Some(c)) | (None, Some(c)) => (DistStyle::Key { column: c }, false),
        (Some("KEY"), None) => {
            return Err(syntax("DISTSTYLE KEY requires a DISTKEY column"));
        }
        (Some("EVEN"), None) => (DistStyle::Even, false),
        (Some("ALL"), None) => (DistStyle::All, false),
        // Redshift's AUTO starts small tables as ALL and grows them into EVEN; we place rows
        // EVEN from the start and say so in svv_table_info (`AUTO(EVEN)`).
        (Some("AUTO"), None) | (None, None) => (DistStyle::Even, true),
        (Some(style), Some(_)) => {
            return Err(syntax(format!(
                "DISTKEY cannot be used with DISTSTYLE {style}"
            )));
        }
        (Some(other), None) => {
            return Err(syntax(format!(
                "unknown DISTSTYLE {other} (expected AUTO, EVEN, KEY or ALL)"
            )));
        }
    };
    let sort = attrs
        .sortkey
        .iter()
        .map(|c| find(c))
        .collect::<Result<Vec<_>>>()?;
    Ok((dist, auto, sort))
}

/// Removes Redshift's table and column attributes from the (significant) tokens, returning
/// what remains.
fn lift_attributes(tokens: &[Token]) -> Result<(Vec<Token>, Attributes)> {
    let mut attrs = Attributes::default();
    let mut out = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    let mut column_list_seen = false;
    let sig: Vec<usize> = (0..tokens.len()).collect();
    let mut current_column: Option<String> = None;
    let mut expect_column_name = false;
    let mut k = 0;
    let mut as_seen = false;
    while k < sig.len() {
        let i = sig[k];
        let t = &tokens[i];
        let kw = keyword(t);
        let next_kw = sig.get(k + 1).and_then(|j| keyword(&tokens[*j]));
        let next_is_lparen = sig.get(k + 1).is_some_and(|j| tokens[*j] == Token::LParen);
        if as_seen {
            out.push(t.clone());
            k += 1;
            continue;
        }
        match t {
            Token::LParen => {
                depth += 1;
                if depth == 1 && !column_list_seen {
                    column_list_seen = true;
                    expect_column_name = true;
                }
                out.push(t.clone());
                k += 1;
                continue;
            }
            Token::RParen => {
                depth = depth.saturating_sub(1);
                out.push(t.clone());
                k += 1;
                continue;
            }
            Token::Comma if depth == 1 => {
                expect_column_name = true;
                out.push(t.clone());
                k += 1;
                continue;
            }
            _ => {}
        }
        if depth == 1 {
            if expect_column_name {
                expect_column_name = false;
                current_column = match kw.as_deref() {
                    Some("PRIMARY" | "UNIQUE" | "FOREIGN" | "CONSTRAINT" | "CHECK") => None,
                    _ => ident(t),
                };
                out.push(t.clone());
                k += 1;
                continue;
            }
            match kw.as_deref() {
                Some("DISTKEY") if !next_is_lparen => {
                    let col = current_column
                        .clone()
                        .ok_or_else(|| syntax("DISTKEY must follow a column definition"))?;
                    if attrs.distkey.replace(col).is_some() {
                        return Err(syntax("a table can have only one DISTKEY"));
                    }
                    k += 1;
                    continue;
                }
                Some("SORTKEY") if !next_is_lparen => {
                    let col = current_column
                        .clone()
                        .ok_or_else(|| syntax("SORTKEY must follow a column definition"))?;
                    attrs.sortkey.push(col);
                    k += 1;
                    continue;
                }
                Some("ENCODE") => {
                    k += 2;
                    continue;
                }
                _ => {}
            }
        }
        if depth == 0 {
            match kw.as_deref() {
                Some("DISTSTYLE") => {
                    let style = sig
                        .get(k + 1)
                        .and_then(|j| keyword(&tokens[*j]))
                        .ok_or_else(|| syntax("DISTSTYLE needs AUTO, EVEN, KEY or ALL"))?;
                    attrs.diststyle = Some(style);
                    k += 2;
                    continue;
                }
                Some("DISTKEY") if next_is_lparen => {
                    let (names, used) = paren_list(tokens, &sig, k + 1)?;
                    if names.len() != 1 {
                        return Err(syntax("DISTKEY takes exactly one column"));
                    }
                    attrs.distkey = names.into_iter().next();
                    k += 1 + used;
                    continue;
                }
                Some("COMPOUND" | "INTERLEAVED") if next_kw.as_deref() == Some("SORTKEY") => {
                    k += 1;
                    continue;
                }
                Some("SORTKEY") if next_is_lparen => {
                    let (names, used) = paren_list(tokens, &sig, k + 1)?;
                    attrs.sortkey = names;
                    k += 1 + used;
                    continue;
                }
                Some("SORTKEY") if next_kw.as_deref() == Some("AUTO") => {
                    k += 2;
                    continue;
                }
                Some("BACKUP") | Some("ENCODE") => {
                    k += 2;
                    continue;
                }
                Some("AS") => as_seen = true,
                _ => {}
            }
        }
        out.push(t.clone());
        k += 1;
    }
    Ok((out, attrs))
}

/// Reads `( name, name, ... )` starting at significant index `start`; returns the names and
/// how many significant tokens were consumed.
fn paren_list(tokens: &[Token], sig: &[usize], start: usize) -> Result<(Vec<String>, usize)> {
    let mut names = Vec::new();
    let mut k = start + 1;
    loop {
        let t = sig
            .get(k)
            .map(|j| &tokens[*j])
            .ok_or_else(|| syntax("unterminated column list"))?;
        match t {
            Token::RParen => break,
            Token::Comma => {}
            other => names.push(
                ident(other)
                    .ok_or_else(|| syntax(format!("expected a column name, found {other}")))?,
            ),
        }
        k += 1;
    }
    Ok((names, k - start + 1))
}

/// The relation name of `schema.table` or `table`.
pub fn table_name(name: &ObjectName) -> Result<RelationName> {
    RelationName::parse(name)
}

fn char_len(l: &Option<CharacterLength>, default: u32) -> Result<u32> {
    let len = match l {
        None => default,
        Some(CharacterLength::Max) => MAX_VARCHAR_LEN,
        Some(CharacterLength::IntegerLength { length, .. }) => {
            u32::try_from(*length).unwrap_or(u32::MAX)
        }
    };
    if len == 0 || len > MAX_VARCHAR_LEN {
        return Err(Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("length for type varchar must be between 1 and {MAX_VARCHAR_LEN}"),
        ));
    }
    Ok(len)
}

/// Maps a declared SQL type to a Blueshift column type.
pub fn column_type(dt: &DataType) -> Result<ColumnType> {
    Ok(match dt {
        DataType::SmallInt(_) | DataType::Int2(_) => ColumnType::SmallInt,
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => ColumnType::Integer,
        DataType::BigInt(_) | DataType::Int8(_) => ColumnType::BigInt,
        DataType::Decimal(info) | DataType::Numeric(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (18, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            if !(1..=38).contains(&p) || s < 0 || s as u64 > p {
                return Err(Error::sql(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("DECIMAL precision {p} and scale {s} are out of range (1..38)"),
                ));
            }
            ColumnType::Decimal {
                precision: p as u8,
                scale: s as i8,
            }
        }
        DataType::Real | DataType::Float4 => ColumnType::Real,
        DataType::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => ColumnType::Real,
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 | DataType::Float(_) => {
            ColumnType::Double
        }
        DataType::Boolean | DataType::Bool => ColumnType::Boolean,
        DataType::Char(l) | DataType::Character(l) => ColumnType::Char {
            len: char_len(l, 1)?,
        },
        DataType::Varchar(l) | DataType::CharacterVarying(l) | DataType::Nvarchar(l) => {
            ColumnType::Varchar {
                len: char_len(l, DEFAULT_VARCHAR_LEN)?,
            }
        }
        DataType::Text | DataType::String(_) => ColumnType::Varchar {
            len: DEFAULT_VARCHAR_LEN,
        },
        DataType::Date => ColumnType::Date,
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            ColumnType::TimestampTz
        }
        DataType::Timestamp(_, _) | DataType::TimestampNtz(_) => ColumnType::Timestamp,
        DataType::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "timestamptz" => ColumnType::TimestampTz,
            "bpchar" => ColumnType::Char { len: 256 },
            "float" => ColumnType::Double,
            other => {
                return Err(Error::sql(
                    "42704",
                    format!("type \"{other}\" does not exist"),
                ));
            }
        },
        other => {
            return Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("column type {other} is not supported yet"),
            ));
        }
    })
}

/// `ALTER TABLE [IF EXISTS] name action [, ...]`, as far as Blueshift runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterTable {
    pub name: RelationName,
    pub if_exists: bool,
    pub actions: Vec<AlterAction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterAction {
    RenameTo(String),
    /// `ADD [COLUMN] [IF NOT EXISTS] name type [NULL]`: existing rows read NULL.
    AddColumn {
        column: ColumnDef,
        if_not_exists: bool,
    },
    DropColumn {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `RENAME [COLUMN] from TO to`.
    RenameColumn {
        from: String,
        to: String,
    },
}

/// The typed form of sqlparser's `ALTER TABLE`.
pub fn alter_table(at: &datafusion::sql::sqlparser::ast::AlterTable) -> Result<AlterTable> {
    use datafusion::sql::sqlparser::ast::{AlterTableOperation, RenameTableNameKind};
    let unsupported = |what: &str| Error::sql(sqlstate::FEATURE_NOT_SUPPORTED, what.to_string());
    let mut actions = Vec::with_capacity(at.operations.len());
    for op in &at.operations {
        actions.push(match op {
            AlterTableOperation::RenameTable { table_name: to } => {
                let (RenameTableNameKind::To(n) | RenameTableNameKind::As(n)) = to;
                AlterAction::RenameTo(table_name(n)?.name)
            }
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                column_position: None,
                ..
            } => {
                for o in &column_def.options {
                    match &o.option {
                        ColumnOption::Null => {}
                        ColumnOption::NotNull | ColumnOption::Default(_) => {
                            return Err(unsupported(
                                "ADD COLUMN with NOT NULL or DEFAULT is not supported yet: \
                                 existing rows read NULL in an added column",
                            ));
                        }
                        other => {
                            return Err(unsupported(&format!(
                                "column option {other} is not supported in ADD COLUMN"
                            )));
                        }
                    }
                }
                AlterAction::AddColumn {
                    column: ColumnDef {
                        name: normalize_ident(&column_def.name),
                        ty: column_type(&column_def.data_type)?,
                        nullable: true,
                    },
                    if_not_exists: *if_not_exists,
                }
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => AlterAction::DropColumn {
                names: column_names.iter().map(normalize_ident).collect(),
                if_exists: *if_exists,
            },
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => AlterAction::RenameColumn {
                from: normalize_ident(old_column_name),
                to: normalize_ident(new_column_name),
            },
            other => {
                return Err(unsupported(&format!(
                    "ALTER TABLE ... {other} is not supported yet"
                )));
            }
        });
    }
    Ok(AlterTable {
        name: table_name(&at.name)?,
        if_exists: at.if_exists,
        actions,
    })
}

/// `ALTER TABLE target APPEND FROM source [IGNOREEXTRA | FILLTARGET]`: moves all of the
/// source's rows into the target and leaves the source empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendFrom {
    pub target: RelationName,
    pub source: RelationName,
    pub extra: AppendColumns,
}

/// How APPEND treats columns only one side has (without an option: an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendColumns {
    Exact,
    /// `IGNOREEXTRA`: source columns the target lacks are dropped.
    IgnoreExtra,
    /// `FILLTARGET`: target columns the source lacks are filled with NULL.
    FillTarget,
}

/// Parses `ALTER TABLE target APPEND FROM source [IGNOREEXTRA | FILLTARGET]`.
pub fn parse_append(tokens: Vec<Token>) -> Result<AppendFrom> {
    let mut p = super::statement::parser_over(tokens);
    let expect = |p: &mut datafusion::sql::sqlparser::parser::Parser, kw: &str| {
        let t = p.next_token().token;
        if keyword(&t).as_deref() == Some(kw) {
            Ok(())
        } else {
            Err(syntax(format!(
                "syntax error at or near \"{t}\": expected {kw}"
            )))
        }
    };
    expect(&mut p, "ALTER")?;
    expect(&mut p, "TABLE")?;
    let name = |p: &mut datafusion::sql::sqlparser::parser::Parser| {
        p.parse_object_name(false)
            .map_err(|e| syntax(format!("syntax error: {e}")))
            .and_then(|n| table_name(&n))
    };
    let target = name(&mut p)?;
    expect(&mut p, "APPEND")?;
    expect(&mut p, "FROM")?;
    let source = name(&mut p)?;
    let extra = match p.next_token().token {
        Token::EOF => AppendColumns::Exact,
        t => {
            let mode = match keyword(&t).as_deref() {
                Some("IGNOREEXTRA") => AppendColumns::IgnoreExtra,
                Some("FILLTARGET") => AppendColumns::FillTarget,
                _ => {
                    return Err(syntax(format!(
                        "syntax error at or near \"{t}\": expected IGNOREEXTRA or FILLTARGET"
                    )));
                }
            };
            match p.next_token().token {
                Token::EOF => mode,
                t => return Err(syntax(format!("syntax error at or near \"{t}\""))),
            }
        }
    };
    Ok(AppendFrom {
        target,
        source,
        extra,
    })
}

/// `DROP TABLE | VIEW [IF EXISTS] name [, ...] [CASCADE | RESTRICT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRelations {
    pub names: Vec<RelationName>,
    pub if_exists: bool,
    /// Also drop the views that depend on them.
    pub cascade: bool,
}

/// `DROP TABLE ...` or `DROP VIEW ...` (`kind`).
pub fn parse_drop(tokens: Vec<Token>, kind: ObjectType) -> Result<DropRelations> {
    match parse_ast(tokens)? {
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } if object_type == kind => Ok(DropRelations {
            names: names.iter().map(table_name).collect::<Result<_>>()?,
            if_exists,
            cascade,
        }),
        _ => Err(syntax(format!("expected DROP {kind}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_create_table(sql: &str) -> Result<CreateTable> {
        super::parse_create_table(&crate::sql::words(sql)?)
    }

    #[test]
    fn table_level_attributes_in_any_order() {
        let ct = parse_create_table(
            "create table t (a int not null, b varchar(10), d date) \
             compound sortkey(d, a) diststyle key distkey(a)",
        )
        .unwrap();
        assert_eq!(ct.dist, DistStyle::Key { column: 0 });
        assert_eq!(ct.sort_key, vec![2, 0]);
        assert!(!ct.columns[0].nullable);
        assert_eq!(ct.columns[1].ty, ColumnType::Varchar { len: 10 });
    }

    #[test]
    fn column_level_distkey_and_sortkey() {
        let ct = parse_create_table(
            "CREATE TABLE IF NOT EXISTS s (id BIGINT DISTKEY, ts TIMESTAMP SORTKEY ENCODE az64, \
             amount DECIMAL(12,2))",
        )
        .unwrap();
        assert!(ct.if_not_exists);
        assert_eq!(ct.dist, DistStyle::Key { column: 0 });
        assert_eq!(ct.sort_key, vec![1]);
        assert_eq!(
            ct.columns[2].ty,
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        );
    }

    #[test]
    fn diststyle_all_and_auto() {
        assert_eq!(
            parse_create_table("create table n (a int) diststyle all")
                .unwrap()
                .dist,
            DistStyle::All
        );
        let auto = parse_create_table("create table n (a int)").unwrap();
        assert!(auto.dist_auto);
    }

    #[test]
    fn bad_attributes_are_errors() {
        let e = parse_create_table("create table t (a int) distkey(b)").unwrap_err();
        assert_eq!(e.sqlstate(), "42703");
        let e = parse_create_table("create table t (a int) diststyle even distkey(a)").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }
}
