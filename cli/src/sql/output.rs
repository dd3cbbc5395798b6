//! How `blueshift sql` prints a result: psql's aligned table (or `\x` expanded records), CSV,
//! or JSON (an array of objects; values as the server's text, NULL as `null`).

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Aligned,
    Csv,
    Json,
}

/// One result set: column names and rows of text values.
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

pub fn render(rs: &ResultSet, format: Format, expanded: bool) -> String {
    match format {
        Format::Csv => csv(rs),
        Format::Json => json(rs),
        Format::Aligned if expanded => expanded_records(rs),
        Format::Aligned => aligned(rs),
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn aligned(rs: &ResultSet) -> String {
    let mut widths: Vec<usize> = rs.columns.iter().map(|c| width(c)).collect();
    for row in &rs.rows {
        for (i, v) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(v.as_deref().unwrap_or("")));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - width(c))))
            .collect();
        let _ = writeln!(out, "{}", parts.join("|").trim_end());
    };
    line(rs.columns.iter().map(String::as_str).collect(), &mut out);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    let _ = writeln!(out, "{}", rule.join("+"));
    for row in &rs.rows {
        line(
            row.iter().map(|v| v.as_deref().unwrap_or("")).collect(),
            &mut out,
        );
    }
    let n = rs.rows.len();
    let _ = writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" });
    out
}

fn expanded_records(rs: &ResultSet) -> String {
    let name_width = rs.columns.iter().map(|c| width(c)).max().unwrap_or(0);
    let mut out = String::new();
    for (i, row) in rs.rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "-[ RECORD {} ]{}",
            i + 1,
            "-".repeat(name_width.max(1))
        );
        for (c, v) in rs.columns.iter().zip(row) {
            let pad = " ".repeat(name_width - width(c));
            let _ = writeln!(out, "{c}{pad} | {}", v.as_deref().unwrap_or(""));
        }
    }
    if rs.rows.is_empty() {
        out.push_str("(0 rows)\n");
    }
    out
}

fn csv_field(v: &str) -> String {
    if v.is_empty() || v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn csv(rs: &ResultSet) -> String {
    let mut out = String::new();
    let header: Vec<String> = rs.columns.iter().map(|c| csv_field(c)).collect();
    let _ = writeln!(out, "{}", header.join(","));
    for row in &rs.rows {
        // NULL is an empty unquoted field, an empty string a quoted one (as COPY CSV).
        let cells: Vec<String> = row
            .iter()
            .map(|v| v.as_deref().map(csv_field).unwrap_or_default())
            .collect();
        let _ = writeln!(out, "{}", cells.join(","));
    }
    out
}

fn json(rs: &ResultSet) -> String {
    let rows: Vec<serde_json::Value> = rs
        .rows
        .iter()
        .map(|row| {
            let mut obj = serde_json::Map::new();
            for (c, v) in rs.columns.iter().zip(row) {
                obj.insert(
                    c.clone(),
                    v.as_ref()
                        .map(|s| serde_json::Value::String(s.clone()))
                        .unwrap_or(serde_json::Value::Null),
                );
            }
            serde_json::Value::Object(obj)
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResultSet {
        ResultSet {
            columns: vec!["id".into(), "name".into()],
            rows: vec![
                vec![Some("1".into()), Some("alpha".into())],
                vec![Some("22".into()), None],
            ],
        }
    }

    #[test]
    fn renders_like_psql() {
        assert_eq!(
            render(&sample(), Format::Aligned, false),
            " id | name\n----+-------\n 1  | alpha\n 22 |\n(2 rows)\n"
        );
        assert_eq!(
            render(&sample(), Format::Aligned, true),
            "-[ RECORD 1 ]----\nid   | 1\nname | alpha\n-[ RECORD 2 ]----\nid   | 22\nname | \n"
        );
        assert_eq!(
            render(&sample(), Format::Csv, false),
            "id,name\n1,alpha\n22,\n"
        );
        assert_eq!(
            render(&sample(), Format::Json, false),
            "[{\"id\":\"1\",\"name\":\"alpha\"},{\"id\":\"22\",\"name\":null}]\n"
        );
    }
}
