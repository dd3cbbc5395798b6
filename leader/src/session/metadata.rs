//! Redshift's metadata listings (`SHOW DATABASES | SCHEMAS | TABLES | COLUMNS`, with bind
//! parameters) built from the catalog.

use std::sync::Arc;

use blueshift_common::error::sqlstate;
use blueshift_common::types::DistStyle;
use datafusion::common::ParamValues;

use super::{Executor, Outcome};
use crate::error::{Error, Result};

impl Executor {
    /// One of Redshift's metadata listings, its bind parameters given.
    pub(super) fn show(
        &self,
        cmd: &crate::sql::show::ShowCommand,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        let values: Vec<String> = match &params {
            Some(ParamValues::List(values)) => values
                .iter()
                .map(|v| match &v.value {
                    datafusion::scalar::ScalarValue::Utf8(Some(s)) => Ok(s.clone()),
                    v if v.is_null() => Err(Error::sql(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "a SHOW parameter cannot be NULL",
                    )),
                    v => Ok(v.to_string()),
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        self.show_objects(&cmd.bind(&values)?)
    }

    fn show_objects(&self, cmd: &crate::sql::show::ShowCommand) -> Result<Outcome> {
        use crate::sql::show::{ShowObjects, like_matches};
        let db = self.leader.database.clone();
        let snapshot = super::tx::snapshot(&self.leader);
        let text = |v: &str| Some(v.to_string());
        // (name the LIKE pattern applies to, the row's cells)
        let rows: Vec<(String, Vec<Cell>)> = match &cmd.objects {
            ShowObjects::Databases => {
                vec![(
                    db.clone(),
                    vec![
                        Cell::Text(text(&db)),
                        Cell::Text(text("blueshift")),
                        Cell::Text(text("local")),
                        Cell::Text(None),
                        Cell::Text(None),
                        Cell::Text(text("Serializable")),
                    ],
                )]
            }
            ShowObjects::Schemas { database } => {
                if *database == db {
                    snapshot
                        .schema_names()
                        .into_iter()
                        .map(|name| {
                            let owner = snapshot
                                .schemas
                                .get(&name)
                                .map(|s| s.owner.clone())
                                .unwrap_or_else(|| "blueshift".to_string());
                            (
                                name.clone(),
                                vec![
                                    Cell::Text(text(&db)),
                                    Cell::Text(Some(name)),
                                    Cell::Text(Some(owner)),
                                    Cell::Text(text("local")),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                ],
                            )
                        })
                        .collect()
                } else {
                    Vec::new()
                }
            }
            ShowObjects::Tables { database, schema } => {
                let mut rows: Vec<(String, Vec<Cell>)> = snapshot
                    .tables
                    .values()
                    .filter(|t| *database == db && t.schema == *schema)
                    .map(|t| {
                        (
                            t.name.clone(),
                            vec![
                                Cell::Text(text(&db)),
                                Cell::Text(text(&t.schema)),
                                Cell::Text(text(&t.name)),
                                Cell::Text(text("TABLE")),
                                Cell::Text(None),
                                Cell::Text(None),
                                // Owners and change times are not recorded.
                                Cell::Text(None),
                                Cell::Text(None),
                                Cell::Text(None),
                                Cell::Text(Some(dist_style(t))),
                                Cell::Text(text("REGULAR TABLE")),
                            ],
                        )
                    })
                    .collect();
                rows.extend(
                    snapshot
                        .views
                        .values()
                        .filter(|v| *database == db && v.schema == *schema)
                        .map(|v| {
                            (
                                v.name.clone(),
                                vec![
                                    Cell::Text(text(&db)),
                                    Cell::Text(text(&v.schema)),
                                    Cell::Text(text(&v.name)),
                                    Cell::Text(text("VIEW")),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                    Cell::Text(None),
                                    Cell::Text(text(if v.late_binding {
                                        "LATE BINDING VIEW"
                                    } else {
                                        "VIEW"
                                    })),
                                ],
                            )
                        }),
                );
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                rows
            }
            ShowObjects::Columns {
                database,
                schema,
                table,
            } => snapshot
                .table_by_name(schema, table)
                .filter(|_| *database == db)
                .map(|t| {
                    t.columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            use blueshift_common::types::ColumnType as T;
                            let (len, precision, scale) = match c.ty {
                                T::Char { len } | T::Varchar { len } => {
                                    (Some(len as i32), None, None)
                                }
                                T::Decimal { precision, scale } => {
                                    (None, Some(i32::from(precision)), Some(i32::from(scale)))
                                }
                                T::SmallInt => (None, Some(16), Some(0)),
                                T::Integer => (None, Some(32), Some(0)),
                                T::BigInt => (None, Some(64), Some(0)),
                                _ => (None, None, None),
                            };
                            (
                                c.name.clone(),
                                vec![
                                    Cell::Text(text(&db)),
                                    Cell::Text(text(&t.schema)),
                                    Cell::Text(text(&t.name)),
                                    Cell::Text(text(&c.name)),
                                    Cell::Int(Some(i as i32 + 1)),
                                    Cell::Text(None),
                                    Cell::Text(text(if c.nullable { "YES" } else { "NO" })),
                                    Cell::Text(Some(c.ty.sql_name())),
                                    Cell::Int(len),
                                    Cell::Int(precision),
                                    Cell::Int(scale),
                                    Cell::Text(None),
                                    Cell::Text(
                                        t.sort_key.contains(&i).then(|| "COMPOUND".to_string()),
                                    ),
                                    Cell::Int(Some(
                                        t.sort_key
                                            .iter()
                                            .position(|k| *k == i)
                                            .map_or(0, |p| p as i32 + 1),
                                    )),
                                    Cell::Int(Some(i32::from(
                                        t.dist == DistStyle::Key { column: i },
                                    ))),
                                    // Segments are Parquet; Redshift's column encodings do
                                    // not apply.
                                    Cell::Text(None),
                                    Cell::Text(None),
                                ],
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let rows: Vec<Vec<Cell>> = rows
            .into_iter()
            .filter(|(name, _)| cmd.like.as_ref().is_none_or(|p| like_matches(p, name)))
            .map(|(_, cells)| cells)
            .take(cmd.limit.unwrap_or(usize::MAX))
            .collect();
        cells_outcome(cmd.objects.columns(), rows)
    }
}

/// `DISTSTYLE` as `SHOW TABLES` reports it: `KEY(col)`, `EVEN`, `ALL`, or `AUTO(...)` when
/// Blueshift chose it.
fn dist_style(t: &blueshift_common::types::TableDef) -> String {
    let style = match &t.dist {
        DistStyle::Key { column } => format!(
            "KEY({})",
            t.columns
                .get(*column)
                .map(|c| c.name.as_str())
                .unwrap_or("?")
        ),
        other => other.name().to_string(),
    };
    if t.dist_auto {
        format!("AUTO({style})")
    } else {
        style
    }
}

/// One value of a metadata listing.
enum Cell {
    Text(Option<String>),
    Int(Option<i32>),
}

/// A listing with `columns` (name, integer?) and `rows`.
fn cells_outcome(columns: &[(&str, bool)], rows: Vec<Vec<Cell>>) -> Result<Outcome> {
    use arrow::array::{ArrayRef, Int32Array, StringArray};
    let schema = crate::sql::show::result_schema(columns);
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let is_int: Vec<bool> = columns.iter().map(|(_, i)| *i).collect();
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| -> ArrayRef {
            if is_int[i] {
                Arc::new(Int32Array::from(
                    rows.iter()
                        .map(|r| match r.get(i) {
                            Some(Cell::Int(v)) => *v,
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                ))
            } else {
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| match r.get(i) {
                            Some(Cell::Text(v)) => v.clone(),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                ))
            }
        })
        .collect();
    let batch = arrow::array::RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Outcome::batches(schema, vec![batch]))
}
