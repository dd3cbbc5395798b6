//! Turning an [`Outcome`] into pgwire's response: rows (text or binary, by the portal's
//! formats), command tags, transaction status changes, COPY IN / COPY OUT, FETCH results.

use super::*;

/// Turns an execution outcome into a pgwire response.
pub(super) fn into_response(outcome: Outcome, format: &Format) -> PgWireResult<Response> {
    match outcome {
        Outcome::Command { tag, rows } => {
            let t = Tag::new(&tag);
            let t = match rows {
                Some(n) => t.with_rows(n as usize),
                None => t,
            };
            Ok(Response::Execution(t))
        }
        Outcome::Transaction { tag, change } => {
            let t = Tag::new(tag);
            Ok(match change {
                TxChange::Begin => Response::TransactionStart(t),
                TxChange::End => Response::TransactionEnd(t),
                TxChange::Within => Response::Execution(t),
            })
        }
        Outcome::CopyIn { columns, .. } => Ok(Response::CopyIn(CopyResponse::new(
            0,
            columns,
            futures::stream::empty(),
        ))),
        Outcome::CopyOut {
            copy,
            schema,
            stream,
        } => {
            let columns = schema.fields().len();
            let header = Arc::new(std::sync::Mutex::new(copy.header_line(&schema)));
            let unsent_header = header.clone();
            let take = |h: &std::sync::Mutex<Option<String>>| match h.lock() {
                Ok(mut g) => g.take(),
                Err(p) => p.into_inner().take(),
            };
            let data = stream
                .map(move |batch| {
                    let lines: Vec<PgWireResult<CopyData>> = match batch
                        .map_err(Error::from)
                        .and_then(|b| crate::sql::copy_out::text_values(&b))
                    {
                        Ok(rows) => rows
                            .iter()
                            .map(|row| {
                                // The header travels with the first row (pgwire counts
                                // messages as rows).
                                let mut line = take(&header).unwrap_or_default();
                                line.push_str(&copy.line(row));
                                Ok(CopyData::new(bytes::Bytes::from(line)))
                            })
                            .collect(),
                        Err(e) => vec![Err(user_error(e))],
                    };
                    futures::stream::iter(lines)
                })
                .flatten()
                // No rows: the header alone.
                .chain(futures::stream::iter(std::iter::from_fn(move || {
                    take(&unsent_header).map(|h| Ok(CopyData::new(bytes::Bytes::from(h))))
                })));
            Ok(Response::CopyOut(CopyResponse::new(0, columns, data)))
        }
        Outcome::Fetched { schema, batches } => {
            let mut response = match into_response(Outcome::batches(schema, batches), format)? {
                Response::Query(q) => q,
                _ => {
                    return Err(user_error(Error::sql(
                        sqlstate::INTERNAL_ERROR,
                        "FETCH without rows",
                    )));
                }
            };
            // pgwire appends the row count to the tag.
            response.set_command_tag("FETCH");
            Ok(Response::Query(response))
        }
        Outcome::Rows { schema, stream } => {
            let fields = Arc::new(arrow_schema_to_pg_fields(schema.as_ref(), format, None)?);
            let f2 = fields.clone();
            let rows = stream
                .map(move |batch| {
                    let rows: Vec<PgWireResult<pgwire::messages::data::DataRow>> = match batch {
                        Ok(b) => encode_recordbatch(f2.clone(), b).collect(),
                        Err(e) => vec![Err(user_error(e.into()))],
                    };
                    futures::stream::iter(rows)
                })
                .flatten();
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
    }
}
