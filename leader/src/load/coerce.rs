//! Casting loaded columns to the table's declared types. A value that does not fit is an
//! error naming the row's origin (file and line), the column, the value, and a SQLSTATE:
//! 22P02 for unparsable text, 42804 for a column whose type cannot become the table's,
//! 23502 for NULL in a NOT NULL column, 22001 for a string longer than its VARCHAR(n).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::DataType;
use arrow::util::display::FormatOptions;
use blueshift_common::error::sqlstate;
use blueshift_common::types::{ColumnDef, TableDef};
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};

const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: FormatOptions::new(),
};

/// A bad value found while coercing.
#[derive(Debug, Clone)]
pub struct BadValue {
    pub row: usize,
    pub column: String,
    pub value: String,
    pub code: &'static str,
    pub reason: String,
}

impl BadValue {
    pub fn into_error(self, origin: &str) -> Error {
        Error::sql(
            self.code,
            format!("{} ({origin}, column \"{}\")", self.reason, self.column),
        )
    }
}

/// Casts `column` (values for table column `def`) to its declared type, reporting the first
/// bad row, or all bad rows when `all` is set.
pub fn coerce_column(
    column: &ArrayRef,
    def: &ColumnDef,
    all: bool,
) -> std::result::Result<ArrayRef, Vec<BadValue>> {
    let target = def.ty.to_arrow();
    let cast = if column.data_type() == &target {
        Ok(column.clone())
    } else if !can_cast_types(column.data_type(), &target) {
        return Err(vec![BadValue {
            row: 0,
            column: def.name.clone(),
            value: String::new(),
            code: sqlstate::DATATYPE_MISMATCH,
            reason: format!(
                "column \"{}\" is of type {} but the source has type {}",
                def.name,
                def.ty.sql_name(),
                column.data_type()
            ),
        }]);
    } else {
        cast_with_options(column, &target, &STRICT)
    };
    let mut bad = Vec::new();
    let out = match cast {
        Ok(a) => Some(a),
        Err(_) => {
            for i in 0..column.len() {
                let one = column.slice(i, 1);
                if let Err(e) = cast_with_options(&one, &target, &STRICT) {
                    bad.push(BadValue {
                        row: i,
                        column: def.name.clone(),
                        value: display_value(&one),
                        code: if matches!(
                            column.data_type(),
                            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                        ) {
                            sqlstate::INVALID_TEXT_REPRESENTATION
                        } else {
                            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
                        },
                        reason: format!(
                            "invalid input syntax for type {}: \"{}\" ({e})",
                            def.ty.sql_name(),
                            display_value(&one)
                        ),
                    });
                    if !all {
                        break;
                    }
                }
            }
            None
        }
    };
    if let Some(a) = &out {
        check_constraints(a, def, all, &mut bad);
    }
    if bad.is_empty() {
        match out {
            Some(a) => Ok(a),
            None => Err(vec![BadValue {
                row: 0,
                column: def.name.clone(),
                value: String::new(),
                code: sqlstate::INVALID_TEXT_REPRESENTATION,
                reason: format!("cannot convert column \"{}\"", def.name),
            }]),
        }
    } else {
        Err(bad)
    }
}

fn check_constraints(a: &ArrayRef, def: &ColumnDef, all: bool, bad: &mut Vec<BadValue>) {
    if !def.nullable && a.null_count() > 0 {
        for i in 0..a.len() {
            if a.is_null(i) {
                bad.push(BadValue {
                    row: i,
                    column: def.name.clone(),
                    value: String::new(),
                    code: sqlstate::NOT_NULL_VIOLATION,
                    reason: format!(
                        "null value in column \"{}\" violates not-null constraint",
                        def.name
                    ),
                });
                if !all {
                    return;
                }
            }
        }
    }
    if let (Some(max), DataType::Utf8) = (def.ty.max_len(), a.data_type()) {
        let s = a.as_string::<i32>();
        for i in 0..s.len() {
            if s.is_valid(i) && s.value(i).len() > max as usize {
                bad.push(BadValue {
                    row: i,
                    column: def.name.clone(),
                    value: s.value(i).chars().take(64).collect(),
                    code: sqlstate::STRING_DATA_RIGHT_TRUNCATION,
                    reason: format!("value too long for type {}", def.ty.sql_name()),
                });
                if !all {
                    return;
                }
            }
        }
    }
}

fn display_value(a: &ArrayRef) -> String {
    if a.is_null(0) {
        return "NULL".into();
    }
    arrow::util::display::array_value_to_string(a, 0).unwrap_or_default()
}

/// Builds a batch of the table's schema from source columns mapped to table columns
/// (`mapping[i]` = source column for table column `i`, or `None` for the column's value in
/// `defaults`, NULL if it has none there). The identity column may stay NULL: its values
/// come after, from [`super::identity::fill`].
pub fn coerce_batch(
    source: &RecordBatch,
    table: &TableDef,
    mapping: &[Option<usize>],
    defaults: &[Option<ScalarValue>],
    all: bool,
) -> std::result::Result<RecordBatch, Vec<BadValue>> {
    let schema = table.pending_identity_schema();
    let mut columns = Vec::with_capacity(table.columns.len());
    let mut bad = Vec::new();
    for (i, def) in table.columns.iter().enumerate() {
        let col = match (mapping.get(i).copied().flatten(), defaults.get(i)) {
            (Some(src), _) => source.column(src).clone(),
            (None, Some(Some(value))) => {
                value.to_array_of_size(source.num_rows()).map_err(|e| {
                    vec![BadValue {
                        row: 0,
                        column: def.name.clone(),
                        value: value.to_string(),
                        code: sqlstate::DATATYPE_MISMATCH,
                        reason: format!("the column's default cannot be stored: {e}"),
                    }]
                })?
            }
            (None, _) => new_null_array(&def.ty.to_arrow(), source.num_rows()),
        };
        let nullable_identity;
        let def = if def.identity.is_some() {
            nullable_identity = ColumnDef {
                nullable: true,
                ..def.clone()
            };
            &nullable_identity
        } else {
            def
        };
        match coerce_column(&col, def, all) {
            Ok(a) => columns.push(a),
            Err(b) => {
                bad.extend(b);
                if !all {
                    return Err(bad);
                }
                columns.push(new_null_array(&def.ty.to_arrow(), source.num_rows()));
            }
        }
    }
    if !bad.is_empty() {
        bad.sort_by_key(|b| b.row);
        return Err(bad);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| {
        vec![BadValue {
            row: 0,
            column: String::new(),
            value: String::new(),
            code: sqlstate::INTERNAL_ERROR,
            reason: e.to_string(),
        }]
    })
}

/// Drops the given rows from a batch.
pub fn without_rows(batch: &RecordBatch, rows: &[usize]) -> Result<RecordBatch> {
    let keep: arrow::array::BooleanArray = (0..batch.num_rows())
        .map(|i| Some(!rows.contains(&i)))
        .collect();
    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use blueshift_common::types::ColumnType;
    use std::sync::Arc;

    #[test]
    fn reports_the_bad_row() {
        let col: ArrayRef = Arc::new(StringArray::from(vec!["1", "2", "three"]));
        let def = ColumnDef::new("n", ColumnType::Integer, true);
        let bad = coerce_column(&col, &def, false).unwrap_err();
        assert_eq!(bad[0].row, 2);
        assert_eq!(bad[0].code, "22P02");
        assert!(bad[0].reason.contains("\"three\""), "{}", bad[0].reason);
    }

    #[test]
    fn enforces_varchar_length_and_not_null() {
        let col: ArrayRef = Arc::new(StringArray::from(vec![Some("abc"), None]));
        let def = ColumnDef::new("s", ColumnType::Varchar { len: 2 }, false);
        let bad = coerce_column(&col, &def, true).unwrap_err();
        let codes: Vec<&str> = bad.iter().map(|b| b.code).collect();
        assert!(
            codes.contains(&"22001") && codes.contains(&"23502"),
            "{codes:?}"
        );
    }
}
