//! Catalog types: what a table is (columns, Redshift types, distribution, sort key) and where
//! its rows live (segments per slice). These are the values the leader's catalog state machine
//! stores and replays, so they must stay serializable and backward compatible.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// A column type as the user declared it (Redshift's names), mapped to one Arrow type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    SmallInt,
    Integer,
    BigInt,
    Decimal { precision: u8, scale: i8 },
    Real,
    Double,
    Boolean,
    Char { len: u32 },
    Varchar { len: u32 },
    Date,
    Timestamp,
    TimestampTz,
}

/// Redshift's default and maximum VARCHAR length.
pub const DEFAULT_VARCHAR_LEN: u32 = 256;
pub const MAX_VARCHAR_LEN: u32 = 65535;

impl ColumnType {
    pub fn to_arrow(&self) -> DataType {
        match self {
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Integer => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Real => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Char { .. } | ColumnType::Varchar { .. } => DataType::Utf8,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
        }
    }

    /// The type as `format_type` / `\d` print it.
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::SmallInt => "smallint".into(),
            ColumnType::Integer => "integer".into(),
            ColumnType::BigInt => "bigint".into(),
            ColumnType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
            ColumnType::Real => "real".into(),
            ColumnType::Double => "double precision".into(),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::Char { len } => format!("character({len})"),
            ColumnType::Varchar { len } => format!("character varying({len})"),
            ColumnType::Date => "date".into(),
            ColumnType::Timestamp => "timestamp without time zone".into(),
            ColumnType::TimestampTz => "timestamp with time zone".into(),
        }
    }

    /// Maximum length in bytes for character types (Redshift counts bytes, not characters).
    pub fn max_len(&self) -> Option<u32> {
        match self {
            ColumnType::Char { len } | ColumnType::Varchar { len } => Some(*len),
            _ => None,
        }
    }

    /// The closest declared type for an Arrow type (used by CTAS-style paths and tests).
    pub fn from_arrow(dt: &DataType) -> Option<ColumnType> {
        Some(match dt {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => ColumnType::SmallInt,
            DataType::Int32 | DataType::UInt16 => ColumnType::Integer,
            DataType::Int64 | DataType::UInt32 => ColumnType::BigInt,
            DataType::Decimal128(p, s) => ColumnType::Decimal {
                precision: *p,
                scale: *s,
            },
            DataType::Float16 | DataType::Float32 => ColumnType::Real,
            DataType::Float64 => ColumnType::Double,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Varchar {
                len: MAX_VARCHAR_LEN,
            },
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Timestamp(_, None) => ColumnType::Timestamp,
            DataType::Timestamp(_, Some(_)) => ColumnType::TimestampTz,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// How a table's rows are placed on slices (Redshift's `DISTSTYLE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistStyle {
    /// Rows go to slice `slice_hash(distkey) % slices`.
    Key { column: usize },
    /// Rows are dealt round-robin over the slices.
    Even,
    /// Every node holds a full copy, on its first slice.
    All,
}

impl DistStyle {
    pub fn name(&self) -> &'static str {
        match self {
            DistStyle::Key { .. } => "KEY",
            DistStyle::Even => "EVEN",
            DistStyle::All => "ALL",
        }
    }
}

/// One immutable Parquet file holding sorted rows of one slice of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Path inside the segment store.
    pub path: String,
    pub slice: u32,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u64,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub dist: DistStyle,
    /// Whether the user asked for `DISTSTYLE AUTO` (or nothing) and we picked `dist`.
    pub dist_auto: bool,
    /// Column indexes of the (compound) sort key, in order.
    pub sort_key: Vec<usize>,
    /// Segments by slice. Key-ordered so that snapshots are deterministic.
    pub segments: BTreeMap<u32, Vec<Segment>>,
    /// Version of the slice hash used to place rows (see [`crate::hash`]).
    pub hash_version: u32,
    /// The user who created the table; empty for tables created before owners were
    /// recorded (when the built-in user was the only one).
    #[serde(default)]
    pub owner: String,
    /// Columns dropped with ALTER TABLE that older segments still hold: a new column may
    /// not take such a name (it would read the old values).
    #[serde(default)]
    pub dropped_columns: Vec<String>,
    /// `CREATE TEMP TABLE`: dropped when the session that created it ends (and at a
    /// leader start, for sessions a crash ended).
    #[serde(default)]
    pub temporary: bool,
}

impl TableDef {
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.to_arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The paths of all of the table's segments (what a statement that replaces them all
    /// removes).
    pub fn segment_paths(&self) -> Vec<String> {
        self.segments
            .values()
            .flatten()
            .map(|s| s.path.clone())
            .collect()
    }

    pub fn total_rows(&self) -> u64 {
        self.segments.values().flatten().map(|s| s.rows).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.values().flatten().map(|s| s.bytes).sum()
    }

    /// Segments of every slice, indexed by slice number (`slices` entries).
    pub fn segments_by_slice(&self, slices: u32) -> Vec<Vec<Segment>> {
        (0..slices)
            .map(|s| self.segments.get(&s).cloned().unwrap_or_default())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redshift_types_map_to_arrow() {
        assert_eq!(ColumnType::Integer.to_arrow(), DataType::Int32);
        assert_eq!(
            ColumnType::Decimal {
                precision: 15,
                scale: 2
            }
            .to_arrow(),
            DataType::Decimal128(15, 2)
        );
        assert_eq!(
            ColumnType::Varchar { len: 10 }.sql_name(),
            "character varying(10)"
        );
    }
}
