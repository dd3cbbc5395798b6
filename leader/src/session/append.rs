//! `ALTER TABLE target APPEND FROM source [IGNOREEXTRA | FILLTARGET]`: moves every row of
//! the source into the target and leaves the source empty, in one catalog command.
//!
//! When the two tables have the same columns and place rows the same way (the same
//! distribution style, on a same-named key, with the same slice hash), the source's segments
//! simply change tables: nothing is copied, as in Redshift. Otherwise (a different layout,
//! or IGNOREEXTRA / FILLTARGET dropping or filling columns) the rows are rewritten into new
//! segments of the target, routed by its distribution key. Either way the source's segments
//! leave it in the same command that gives the target its rows, so no reader ever sees the
//! rows twice or not at all. Like Redshift, it does not run inside a transaction block.

use blueshift_common::error::sqlstate;
use blueshift_common::types::{DistStyle, TableDef};

use super::dml::ColumnSource;
use super::{Executor, Outcome, search_path, tx};
use crate::catalog::{Command, Relation, SegmentChange};
use crate::error::{Error, Result};
use crate::planner::query_context;
use crate::sql::ddl::{AppendColumns, AppendFrom};
use crate::sql::names::RelationName;

impl Executor {
    pub(super) async fn append_from(&self, stmt: &AppendFrom) -> Result<Outcome> {
        if tx::in_block() {
            return Err(Error::sql(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "ALTER TABLE APPEND cannot run inside a transaction block",
            ));
        }
        let _pin = self.leader.pins.pin();
        let qc = query_context(&self.leader)?;
        let snapshot = qc.catalog.clone();
        let target = table(&snapshot, &stmt.target)?;
        let source = table(&snapshot, &stmt.source)?;
        // Rows move: INSERT into the target, and they leave the source.
        use crate::catalog::acl::Privileges;
        self.require_write(&snapshot, target, Privileges::INSERT)?;
        self.require_write(
            &snapshot,
            source,
            Privileges::SELECT.with(Privileges::DELETE),
        )?;
        if target.id == source.id {
            return Err(Error::sql(
                sqlstate::INVALID_PARAMETER_VALUE,
                "ALTER TABLE APPEND needs two different tables",
            ));
        }
        let sources = column_sources(target, source, stmt.extra)?;
        let identical = target.columns.len() == source.columns.len()
            && sources.iter().all(|s| matches!(s, ColumnSource::Column(_)));
        let all_source_segments: Vec<String> = source.segment_paths();
        let add = if identical && same_layout(target, source) {
            source.segments.values().flatten().cloned().collect()
        } else {
            self.rewrite_table(&qc, source, target, &sources).await?.0
        };
        let changes = vec![
            SegmentChange {
                table_id: source.id,
                remove: all_source_segments,
                add: vec![],
            },
            SegmentChange {
                table_id: target.id,
                remove: vec![],
                add,
            },
        ];
        // Fails with 40001, changing nothing, if another statement replaced a source
        // segment meanwhile; rows loaded into the source since this read stay there.
        tx::execute(&self.leader, |_| Ok(Command::ReplaceSegments { changes })).await?;
        Ok(Outcome::Command {
            tag: "ALTER TABLE APPEND".into(),
            rows: None,
        })
    }
}

fn table<'a>(
    snapshot: &'a crate::catalog::CatalogState,
    name: &RelationName,
) -> Result<&'a TableDef> {
    match snapshot.relation(name, &search_path()) {
        Some(Relation::Table(def)) => Ok(def),
        Some(Relation::View(_)) => Err(Error::sql(
            sqlstate::WRONG_OBJECT_TYPE,
            format!("\"{name}\" is a view: ALTER TABLE APPEND moves rows between tables"),
        )),
        None => Err(snapshot.missing(name)),
    }
}

/// For each target column, the source column its values come from (with FILLTARGET, its
/// default, a new identity value, or NULL). Same-named columns must have the same type and
/// nullability.
fn column_sources(
    target: &TableDef,
    source: &TableDef,
    extra: AppendColumns,
) -> Result<Vec<ColumnSource>> {
    let mut sources = Vec::with_capacity(target.columns.len());
    for c in &target.columns {
        match source.columns.iter().find(|s| s.name == c.name) {
            Some(s) => {
                if s.ty != c.ty || s.nullable != c.nullable {
                    return Err(Error::sql(
                        sqlstate::DATATYPE_MISMATCH,
                        format!(
                            "column \"{}\" is {}{} in \"{}\" but {}{} in \"{}\": ALTER TABLE \
                             APPEND needs matching columns to have the same type and \
                             nullability",
                            c.name,
                            s.ty.sql_name(),
                            if s.nullable { "" } else { " NOT NULL" },
                            source.name,
                            c.ty.sql_name(),
                            if c.nullable { "" } else { " NOT NULL" },
                            target.name
                        ),
                    ));
                }
                sources.push(ColumnSource::Column(c.name.clone()));
            }
            None if extra == AppendColumns::FillTarget => {
                if let Some(text) = &c.default {
                    sources.push(ColumnSource::Default(text.clone()));
                    continue;
                }
                if !c.nullable && c.identity.is_none() {
                    return Err(Error::sql(
                        sqlstate::NOT_NULL_VIOLATION,
                        format!(
                            "FILLTARGET cannot fill column \"{}\" of \"{}\": it is NOT NULL",
                            c.name, target.name
                        ),
                    ));
                }
                sources.push(ColumnSource::Null);
            }
            None => {
                return Err(Error::sql(
                    sqlstate::DATATYPE_MISMATCH,
                    format!(
                        "target column \"{}\" is not in \"{}\" (FILLTARGET fills it with its \
                         default)",
                        c.name, source.name
                    ),
                ));
            }
        }
    }
    if extra != AppendColumns::IgnoreExtra
        && let Some(c) = source
            .columns
            .iter()
            .find(|s| !target.columns.iter().any(|c| c.name == s.name))
    {
        return Err(Error::sql(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "source column \"{}\" is not in \"{}\" (IGNOREEXTRA leaves it out)",
                c.name, target.name
            ),
        ));
    }
    Ok(sources)
}

/// Whether a source segment can be a target segment as it is: rows on the same slices.
fn same_layout(target: &TableDef, source: &TableDef) -> bool {
    if target.hash_version != source.hash_version {
        return false;
    }
    match (&target.dist, &source.dist) {
        (DistStyle::Even, DistStyle::Even) | (DistStyle::All, DistStyle::All) => true,
        (DistStyle::Key { column: t }, DistStyle::Key { column: s }) => {
            target.columns[*t].name == source.columns[*s].name
        }
        _ => false,
    }
}
