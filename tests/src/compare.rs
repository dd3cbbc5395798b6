//! Comparing result sets from two engines (Blueshift and the DuckDB oracle), cell by cell.
//!
//! Two cells are equal when
//! - both are NULL, or their text is identical, or
//! - both are booleans with the same value (`t`/`true`, `f`/`false`, any case), or
//! - both are numbers and either agree within 1e-6 relative, or are equal at the precision
//!   the shorter one is printed with (e.g. DataFusion's `avg` of a `DECIMAL(15,2)` has scale
//!   6: `0.049985` equals DuckDB's double `0.04998529583637086`, since they differ by less
//!   than `1e-6`). Decimals printed with the same scale get no such slack.
//!
//! On a mismatch the error lists the differing rows side by side. [`compare_rows_ordered_by`]
//! also accepts rows that tie on a query's ORDER BY columns in a different order.

use std::cmp::Ordering;

use crate::Rows;

/// Relative tolerance for numbers.
pub const REL_TOLERANCE: f64 = 1e-6;
/// At most this many differing rows are listed in a diff.
const MAX_DIFF_ROWS: usize = 20;

/// Compares `actual` with `expected` row by row (order matters); on mismatch returns a
/// readable diff.
pub fn compare_rows(actual: &Rows, expected: &Rows) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let columns_equal = a.len() == e.len()
            && a.iter()
                .zip(e)
                .all(|(x, y)| cells_equal(x.as_deref(), y.as_deref()));
        if !columns_equal {
            diffs.push(format!(
                "  row {i}:\n    expected {}\n    actual   {}{}",
                format_row(e),
                format_row(a),
                differing_columns(a, e)
            ));
        }
    }
    if diffs.is_empty() && actual.len() == expected.len() {
        return Ok(());
    }
    let mut out = format!(
        "results differ: expected {} rows, got {} rows\n",
        expected.len(),
        actual.len()
    );
    let shown = diffs.len().min(MAX_DIFF_ROWS);
    for d in &diffs[..shown] {
        out.push_str(d);
        out.push('\n');
    }
    if diffs.len() > shown {
        out.push_str(&format!(
            "  ... and {} more differing rows\n",
            diffs.len() - shown
        ));
    }
    let common = actual.len().min(expected.len());
    for (label, rows) in [("missing", expected), ("unexpected", actual)] {
        for (i, row) in rows.iter().enumerate().skip(common).take(MAX_DIFF_ROWS) {
            out.push_str(&format!("  {label} row {i}: {}\n", format_row(row)));
        }
        if rows.len() > common + MAX_DIFF_ROWS {
            out.push_str(&format!(
                "  ... and {} more {label} rows\n",
                rows.len() - common - MAX_DIFF_ROWS
            ));
        }
    }
    Err(out)
}

/// Compares two results of a query whose ORDER BY is `order_by` (0-based output column
/// positions): like [`compare_rows`], except that rows equal in every `order_by` column (ties)
/// may come in any order. Row `i` of both must agree on the sort columns, and each run of
/// tied rows must hold the same rows. On mismatch returns [`compare_rows`]'s diff.
///
/// Ties straddling a `LIMIT` are not accepted: both engines must cut at the same rows.
pub fn compare_rows_ordered_by(
    actual: &Rows,
    expected: &Rows,
    order_by: &[usize],
) -> Result<(), String> {
    let strict = compare_rows(actual, expected);
    if strict.is_ok() || actual.len() != expected.len() {
        return strict;
    }
    let key_equal = |a: &[Option<String>], b: &[Option<String>]| {
        order_by.iter().all(|&c| match (a.get(c), b.get(c)) {
            (Some(x), Some(y)) => cells_equal(x.as_deref(), y.as_deref()),
            _ => false,
        })
    };
    if !actual.iter().zip(expected).all(|(a, e)| key_equal(a, e)) {
        return strict;
    }
    let mut start = 0;
    while start < expected.len() {
        let mut end = start + 1;
        while end < expected.len() && key_equal(&expected[end], &expected[start]) {
            end += 1;
        }
        let mut a = actual[start..end].to_vec();
        let mut e = expected[start..end].to_vec();
        a.sort_by(|x, y| canonical_row_order(x, y));
        e.sort_by(|x, y| canonical_row_order(x, y));
        if compare_rows(&a, &e).is_err() {
            return strict;
        }
        start = end;
    }
    Ok(())
}

/// An ordering of rows that sorts numbers by value (NULL first), so that two engines' tied
/// rows line up even when they print numbers differently.
fn canonical_row_order(a: &[Option<String>], b: &[Option<String>]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.as_deref(), y.as_deref()) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => match (as_number(x), as_number(y)) {
                (Some(_), Some(_)) if values_equal(x, y) => Ordering::Equal,
                (Some(p), Some(q)) => p.total_cmp(&q),
                _ => x.cmp(y),
            },
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Panics with a diff (prefixed by `what`) unless the result sets are equal.
#[track_caller]
pub fn assert_rows_eq(what: &str, actual: &Rows, expected: &Rows) {
    if let Err(diff) = compare_rows(actual, expected) {
        panic!("{what}: {diff}");
    }
}

/// Whether two cells are equal under the rules in the module docs.
pub fn cells_equal(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => values_equal(a, b),
        _ => false,
    }
}

/// Whether two non-NULL text values are equal under the rules in the module docs.
pub fn values_equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if let (Some(x), Some(y)) = (as_bool(a), as_bool(b)) {
        return x == y;
    }
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => numbers_equal(a, x, b, y),
        _ => false,
    }
}

/// Compares two lines of whitespace-separated tokens (sqllogictest's row format) with
/// [`values_equal`] per token.
pub fn lines_equal(a: &str, b: &str) -> bool {
    let ta: Vec<&str> = a.split_whitespace().collect();
    let tb: Vec<&str> = b.split_whitespace().collect();
    ta.len() == tb.len() && ta.iter().zip(&tb).all(|(x, y)| values_equal(x, y))
}

/// An ordering of sqllogictest lines that sorts numbers by value, so that two engines'
/// unordered (`rowsort`) answers line up even when they print numbers differently.
pub fn canonical_line_order(a: &str, b: &str) -> Ordering {
    let mut ta = a.split_whitespace();
    let mut tb = b.split_whitespace();
    loop {
        match (ta.next(), tb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (as_number(x), as_number(y)) {
                    (Some(p), Some(q)) if !values_equal(x, y) => p.total_cmp(&q),
                    (Some(_), Some(_)) => Ordering::Equal,
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn numbers_equal(a: &str, x: f64, b: &str, y: f64) -> bool {
    if x.is_nan() || y.is_nan() {
        return x.is_nan() && y.is_nan();
    }
    if x == y {
        return true;
    }
    let scale = x.abs().max(y.abs());
    if (x - y).abs() <= REL_TOLERANCE * scale {
        return true;
    }
    // Equal at the precision printed: only when the two are printed with different numbers
    // of fraction digits and the shorter one has at least one.
    let (da, db) = (fraction_digits(a), fraction_digits(b));
    match (da, db) {
        (Some(da), Some(db)) if da != db && da.min(db) > 0 => {
            let digits = i32::try_from(da.min(db)).unwrap_or(i32::MAX);
            (x - y).abs() <= 10f64.powi(-digits) * (1.0 + 1e-9)
        }
        _ => false,
    }
}

/// Number of digits after the decimal point of a plain decimal literal (`None` for
/// exponent notation).
fn fraction_digits(s: &str) -> Option<usize> {
    let s = s.trim();
    if s.contains(['e', 'E']) {
        return None;
    }
    Some(s.split_once('.').map_or(0, |(_, frac)| frac.len()))
}

fn as_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" => Some(true),
        "f" | "false" => Some(false),
        _ => None,
    }
}

fn as_number(s: &str) -> Option<f64> {
    let s = s.trim();
    // Only plain numeric literals: f64::from_str also accepts words like "inf" and "nan".
    let looks_numeric = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        && s.chars().any(|c| c.is_ascii_digit());
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if looks_numeric => s.parse().ok(),
        _ => None,
    }
}

fn format_row(row: &[Option<String>]) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|c| match c {
            None => "NULL".to_owned(),
            Some(s) => format!("{s:?}"),
        })
        .collect();
    format!("[{}]", cells.join(", "))
}

fn differing_columns(actual: &[Option<String>], expected: &[Option<String>]) -> String {
    if actual.len() != expected.len() {
        return format!(
            "\n    (expected {} columns, got {})",
            expected.len(),
            actual.len()
        );
    }
    let cols: Vec<String> = actual
        .iter()
        .zip(expected)
        .enumerate()
        .filter(|(_, (a, e))| !cells_equal(a.as_deref(), e.as_deref()))
        .map(|(i, _)| i.to_string())
        .collect();
    format!("\n    (columns {} differ)", cols.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rows(data: &[&[Option<&str>]]) -> Rows {
        data.iter()
            .map(|r| r.iter().map(|c| c.map(str::to_owned)).collect())
            .collect()
    }

    #[test]
    fn numbers_compare_with_tolerance() {
        assert!(values_equal("25.522006", "25.522005853257337"));
        assert!(values_equal("0.049985", "0.04998529583637086"));
        assert!(values_equal("172698.99", "172698.98999999999"));
        assert!(values_equal("12.5", "12.50"));
        assert!(values_equal("1e+20", "100000000000000000000"));
        assert!(!values_equal("100", "101"));
        assert!(!values_equal("0.05", "0.06"));
        // Same scale: no "printed precision" slack.
        assert!(!values_equal("1.01", "1.02"));
        assert!(!values_equal("NaN", "1"));
        assert!(values_equal("NaN", "NaN"));
    }

    #[test]
    fn booleans_and_text() {
        assert!(values_equal("t", "true"));
        assert!(values_equal("False", "f"));
        assert!(!values_equal("t", "f"));
        assert!(!values_equal("abc", "abd"));
        assert!(!values_equal("inf", "infinity"));
        assert!(cells_equal(None, None));
        assert!(!cells_equal(None, Some("NULL")));
    }

    #[test]
    fn diff_names_rows_and_columns() {
        let a = rows(&[&[Some("1"), Some("x")], &[Some("2"), None]]);
        let e = rows(&[
            &[Some("1"), Some("x")],
            &[Some("2"), Some("y")],
            &[Some("3"), None],
        ]);
        let diff = compare_rows(&a, &e).unwrap_err();
        assert!(diff.contains("expected 3 rows, got 2 rows"), "{diff}");
        assert!(diff.contains("row 1:"), "{diff}");
        assert!(diff.contains("columns 1 differ"), "{diff}");
        assert!(diff.contains("missing row 2"), "{diff}");
        assert!(compare_rows(&a, &a).is_ok());
    }

    #[test]
    fn ties_may_come_in_any_order() {
        // Sorted by column 1 descending; rows 1 and 2 tie.
        let e = rows(&[
            &[Some("a"), Some("3")],
            &[Some("b"), Some("2.0")],
            &[Some("c"), Some("2")],
            &[Some("d"), Some("1")],
        ]);
        let a = rows(&[
            &[Some("a"), Some("3")],
            &[Some("c"), Some("2")],
            &[Some("b"), Some("2")],
            &[Some("d"), Some("1")],
        ]);
        assert!(compare_rows(&a, &e).is_err());
        assert!(compare_rows_ordered_by(&a, &e, &[1]).is_ok());
        // Not a tie on the sort key: the order matters.
        let swapped = rows(&[
            &[Some("a"), Some("3")],
            &[Some("d"), Some("1")],
            &[Some("b"), Some("2")],
            &[Some("c"), Some("2")],
        ]);
        assert!(compare_rows_ordered_by(&swapped, &e, &[1]).is_err());
        // A tie run must hold the same rows.
        let mut other = a.clone();
        other[2][0] = Some("x".to_owned());
        let diff = compare_rows_ordered_by(&other, &e, &[1]).unwrap_err();
        assert!(diff.contains("row 1:"), "{diff}");
        // No sort key: every row is one tie run.
        assert!(compare_rows_ordered_by(&swapped, &e, &[]).is_ok());
    }

    #[test]
    fn lines_and_order() {
        assert!(lines_equal("a 1.50 t", "a  1.5 true"));
        assert!(!lines_equal("a 1", "a 1 2"));
        assert_eq!(canonical_line_order("x 9", "x 10"), Ordering::Less);
        assert_eq!(canonical_line_order("x 1.5", "x 1.50"), Ordering::Equal);
        assert_eq!(canonical_line_order("a", "b"), Ordering::Less);
    }
}
