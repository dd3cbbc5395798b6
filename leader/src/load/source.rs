//! Finding the files of a `COPY` and reading them into batches of the table's schema.
//! Reading is blocking I/O and parsing, so it runs on a blocking thread and hands batches to
//! the router through a bounded channel (back-pressure: a slow cluster slows the reader).
//!
//! CSV and delimited text are parsed here, not by a generic reader, so a bad value is
//! reported with its file and line (`line 4` is the 4th line of the file, header included).
//! Parquet columns are matched to table columns by name, or by position when the names
//! differ but the counts agree.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use blueshift_common::error::sqlstate;
use blueshift_common::types::TableDef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::sync::mpsc;

use super::coerce::{BadValue, coerce_batch, without_rows};
use super::{LoadError, SharedLoadErrors};
use crate::error::{Error, Result};
use crate::sql::copy::{CopyOptions, Format};

const BATCH_ROWS: usize = 8192;

/// The files named by a COPY source: a file, a directory (all files below it), a glob
/// pattern, or, like an S3 key prefix, every file whose path starts with it.
pub fn list_files(source: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(source);
    if !path.is_absolute() {
        return Err(Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("COPY source \"{source}\" must be an absolute path"),
        ));
    }
    let mut files = Vec::new();
    if source.contains(['*', '?', '[']) {
        let paths = glob::glob(source).map_err(|e| {
            Error::sql(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("invalid pattern \"{source}\": {e}"),
            )
        })?;
        for p in paths.flatten() {
            if p.is_file() {
                files.push(p);
            }
        }
    } else if path.is_dir() {
        walk(path, &mut files)?;
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else if let (Some(parent), Some(prefix)) = (path.parent(), path.file_name()) {
        let prefix = prefix.to_string_lossy();
        if let Ok(entries) = std::fs::read_dir(parent) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(prefix.as_ref()) && !hidden(&name) {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, &mut files)?;
                    } else {
                        files.push(p);
                    }
                }
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::sql(
            sqlstate::UNDEFINED_FILE,
            format!("could not open file \"{source}\" for reading: no such file or directory"),
        ));
    }
    Ok(files)
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if hidden(&e.file_name().to_string_lossy()) {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// What the reader needs to know about the load.
pub struct ReadSpec {
    pub table: TableDef,
    /// Table column index for each source column, in source order (`COPY t (cols)`), or
    /// `None` for all table columns in order.
    pub columns: Option<Vec<usize>>,
    /// For each table column, what a row gets when the load has no value for it (its
    /// `DEFAULT`, evaluated once per statement).
    pub defaults: Vec<Option<datafusion::common::ScalarValue>>,
    pub options: CopyOptions,
    pub query_id: String,
    pub errors: SharedLoadErrors,
}

/// Reads every file, sending batches of the table's schema; stops at the first error.
pub fn read_files(spec: ReadSpec, files: Vec<PathBuf>, tx: mpsc::Sender<Result<RecordBatch>>) {
    let mut rejected = 0u64;
    for file in files {
        let result = match spec.options.format {
            Format::Parquet => read_parquet(&spec, &file, &tx),
            Format::Csv | Format::Text => read_delimited(&spec, &file, &tx, &mut rejected),
        };
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        if tx.is_closed() {
            return;
        }
    }
}

fn open_error(file: &Path, e: impl std::fmt::Display) -> Error {
    Error::sql(
        sqlstate::UNDEFINED_FILE,
        format!("could not read file \"{}\": {e}", file.display()),
    )
}

/// Source column -> table column mapping as `coerce_batch` wants it.
fn mapping(spec: &ReadSpec, source_columns: usize) -> Vec<Option<usize>> {
    let n = spec.table.columns.len();
    let mut m = vec![None; n];
    match &spec.columns {
        Some(cols) => {
            for (src, dst) in cols.iter().enumerate() {
                if src < source_columns {
                    m[*dst] = Some(src);
                }
            }
        }
        None => {
            for (i, slot) in m.iter_mut().enumerate().take(source_columns.min(n)) {
                *slot = Some(i);
            }
        }
    }
    m
}

fn expected_columns(spec: &ReadSpec) -> usize {
    spec.columns
        .as_ref()
        .map(Vec::len)
        .unwrap_or(spec.table.columns.len())
}

fn read_delimited(
    spec: &ReadSpec,
    file: &Path,
    tx: &mpsc::Sender<Result<RecordBatch>>,
    rejected: &mut u64,
) -> Result<()> {
    let f = File::open(file).map_err(|e| open_error(file, e))?;
    let reader: Box<dyn Read> = if spec.options.gzip || file.extension().is_some_and(|e| e == "gz")
    {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(BufReader::new(f))
    };
    read_delimited_from(spec, file, reader, tx, rejected)
}

/// Reads the rows a client sends with `COPY ... FROM STDIN` (text or CSV); errors name
/// `STDIN` and the line.
pub fn read_stdin(spec: ReadSpec, reader: Box<dyn Read>, tx: mpsc::Sender<Result<RecordBatch>>) {
    let mut rejected = 0u64;
    if let Err(e) = read_delimited_from(&spec, Path::new("STDIN"), reader, &tx, &mut rejected) {
        let _ = tx.blocking_send(Err(e));
    }
}

fn read_delimited_from(
    spec: &ReadSpec,
    file: &Path,
    reader: Box<dyn Read>,
    tx: &mpsc::Sender<Result<RecordBatch>>,
    rejected: &mut u64,
) -> Result<()> {
    let o = &spec.options;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(o.delimiter)
        .quoting(o.format == Format::Csv)
        .quote(o.quote)
        .double_quote(true)
        .from_reader(reader);
    let width = expected_columns(spec);
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(BATCH_ROWS); width];
    let mut lines: Vec<u64> = Vec::with_capacity(BATCH_ROWS);
    let mut record = csv::StringRecord::new();
    let mut skipped = 0u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            // The client went away in the middle of COPY FROM STDIN (see ChannelReader).
            Err(e)
                if matches!(e.kind(), csv::ErrorKind::Io(io)
                    if io.kind() == std::io::ErrorKind::ConnectionAborted) =>
            {
                return Err(Error::sql(
                    sqlstate::CONNECTION_FAILURE,
                    format!("reading \"{}\": {e}; nothing was loaded", file.display()),
                ));
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(Error::sql(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    format!(
                        "malformed line in file \"{}\", line {line}: {e}",
                        file.display()
                    ),
                ));
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if skipped < o.ignore_header {
            skipped += 1;
            continue;
        }
        if record.len() == 1 && record.get(0) == Some("") {
            continue; // blank line
        }
        if record.len() != width {
            let reason = if record.len() > width {
                "extra data after last expected column"
            } else {
                "missing data for a column"
            };
            let err = BadValue {
                row: 0,
                column: String::new(),
                value: String::new(),
                code: sqlstate::BAD_COPY_FILE_FORMAT,
                reason: format!("{reason}: expected {width} columns, found {}", record.len()),
            };
            reject(spec, file, line, err, rejected)?;
            continue;
        }
        for (i, field) in record.iter().enumerate() {
            columns[i].push(field_value(field, spec, i));
        }
        lines.push(line);
        if lines.len() >= BATCH_ROWS {
            flush_text(spec, file, &mut columns, &mut lines, tx, rejected)?;
        }
    }
    flush_text(spec, file, &mut columns, &mut lines, tx, rejected)
}

fn field_value(field: &str, spec: &ReadSpec, source_col: usize) -> Option<String> {
    let o = &spec.options;
    if field == o.null_as {
        return None;
    }
    let table_col = match &spec.columns {
        Some(c) => c.get(source_col).copied(),
        None => Some(source_col),
    };
    let is_string = table_col
        .and_then(|c| spec.table.columns.get(c))
        .is_some_and(|c| c.ty.max_len().is_some());
    if field.is_empty() && (!is_string || o.empty_as_null) {
        return None;
    }
    if o.blanks_as_null && field.trim().is_empty() {
        return None;
    }
    if is_string {
        Some(field.to_string())
    } else {
        Some(field.trim().to_string())
    }
}

fn flush_text(
    spec: &ReadSpec,
    file: &Path,
    columns: &mut [Vec<Option<String>>],
    lines: &mut Vec<u64>,
    tx: &mpsc::Sender<Result<RecordBatch>>,
    rejected: &mut u64,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let arrays: Vec<ArrayRef> = columns
        .iter_mut()
        .map(|c| Arc::new(StringArray::from(std::mem::take(c))) as ArrayRef)
        .collect();
    let fields: Vec<Field> = (0..arrays.len())
        .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
        .collect();
    let raw = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let map = mapping(spec, raw.num_columns());
    let all = spec.options.max_error > 0;
    let batch = match coerce_batch(&raw, &spec.table, &map, &spec.defaults, all) {
        Ok(b) => b,
        Err(bad) => {
            let mut rows: Vec<usize> = Vec::new();
            for b in bad {
                let line = lines.get(b.row).copied().unwrap_or(0);
                rows.push(b.row);
                reject(spec, file, line, b, rejected)?;
            }
            rows.sort_unstable();
            rows.dedup();
            let kept = without_rows(&raw, &rows)?;
            coerce_batch(&kept, &spec.table, &map, &spec.defaults, false).map_err(|mut b| {
                let first = b.remove(0);
                first.into_error(&format!("file \"{}\"", file.display()))
            })?
        }
    };
    lines.clear();
    if batch.num_rows() > 0 && tx.blocking_send(Ok(batch)).is_err() {
        return Err(Error::sql(sqlstate::QUERY_CANCELED, "load cancelled"));
    }
    Ok(())
}

/// Records a rejected row; fails the load once MAXERROR is exceeded.
fn reject(
    spec: &ReadSpec,
    file: &Path,
    line: u64,
    bad: BadValue,
    rejected: &mut u64,
) -> Result<()> {
    let origin = format!("file \"{}\", line {line}", file.display());
    if *rejected >= spec.options.max_error {
        let hint = if spec.options.max_error > 0 {
            format!(" (MAXERROR {} exceeded)", spec.options.max_error)
        } else {
            String::new()
        };
        let code = bad.code;
        let msg = bad.into_error(&origin).user_message();
        return Err(Error::sql(code, format!("{msg}{hint}")));
    }
    *rejected += 1;
    spec.errors.push(LoadError {
        query_id: spec.query_id.clone(),
        filename: file.display().to_string(),
        line_number: line as i64,
        colname: bad.column,
        raw_field_value: bad.value,
        err_code: bad.code.to_string(),
        err_reason: bad.reason,
        starttime: chrono::Utc::now(),
    });
    Ok(())
}

fn read_parquet(
    spec: &ReadSpec,
    file: &Path,
    tx: &mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    let f = File::open(file).map_err(|e| open_error(file, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| {
        Error::sql(
            sqlstate::BAD_COPY_FILE_FORMAT,
            format!(
                "file \"{}\" is not a valid Parquet file: {e}",
                file.display()
            ),
        )
    })?;
    let file_schema = builder.schema().clone();
    let map = parquet_mapping(spec, &file_schema, file)?;
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(|e| {
        Error::sql(
            sqlstate::BAD_COPY_FILE_FORMAT,
            format!("cannot read Parquet file \"{}\": {e}", file.display()),
        )
    })?;
    let mut row_base = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::sql(
                sqlstate::BAD_COPY_FILE_FORMAT,
                format!("cannot read Parquet file \"{}\": {e}", file.display()),
            )
        })?;
        let n = batch.num_rows();
        let out =
            coerce_batch(&batch, &spec.table, &map, &spec.defaults, false).map_err(|mut bad| {
                let b = bad.remove(0);
                let origin = format!("file \"{}\", row {}", file.display(), row_base + b.row + 1);
                b.into_error(&origin)
            })?;
        row_base += n;
        if tx.blocking_send(Ok(out)).is_err() {
            return Err(Error::sql(sqlstate::QUERY_CANCELED, "load cancelled"));
        }
    }
    Ok(())
}

fn parquet_mapping(
    spec: &ReadSpec,
    file_schema: &Schema,
    file: &Path,
) -> Result<Vec<Option<usize>>> {
    let wanted: Vec<usize> = match &spec.columns {
        Some(c) => c.clone(),
        None => (0..spec.table.columns.len()).collect(),
    };
    let by_name: Option<Vec<usize>> = wanted
        .iter()
        .map(|t| {
            let name = &spec.table.columns[*t].name;
            file_schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
        })
        .collect();
    let mut m = vec![None; spec.table.columns.len()];
    match by_name {
        Some(src) => {
            for (t, s) in wanted.iter().zip(src) {
                m[*t] = Some(s);
            }
        }
        None if file_schema.fields().len() == wanted.len() => {
            for (s, t) in wanted.iter().enumerate() {
                m[*t] = Some(s);
            }
        }
        None => {
            return Err(Error::sql(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "Parquet file \"{}\" has {} columns ({}), which match neither the names nor the count of the {} target columns",
                    file.display(),
                    file_schema.fields().len(),
                    file_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    wanted.len()
                ),
            ));
        }
    }
    Ok(m)
}
