//! A session's open cursors (`DECLARE` / `FETCH` / `CLOSE`, see [`crate::sql::cursor`]): each
//! holds its query's running result stream, read forward as FETCHes ask. A cursor without
//! `WITH HOLD` closes when its transaction block ends; dropping a cursor drops its stream,
//! which releases the query's stages on the nodes.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};

struct Cursor {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    /// Rows read from the stream but not fetched yet.
    pending: Option<RecordBatch>,
    hold: bool,
}

/// Kept in the session's extensions.
#[derive(Default)]
pub struct Cursors(tokio::sync::Mutex<HashMap<String, Cursor>>);

fn no_such_cursor(name: &str) -> Error {
    Error::sql(
        sqlstate::INVALID_CURSOR_NAME,
        format!("cursor \"{name}\" does not exist"),
    )
}

impl Cursors {
    pub async fn declare(
        &self,
        name: String,
        hold: bool,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    ) -> Result<()> {
        let mut open = self.0.lock().await;
        if open.contains_key(&name) {
            return Err(Error::sql(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        open.insert(
            name,
            Cursor {
                schema,
                stream,
                pending: None,
                hold,
            },
        );
        Ok(())
    }

    /// The next `count` rows (all that are left when `None`).
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<u64>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut open = self.0.lock().await;
        let cursor = open.get_mut(name).ok_or_else(|| no_such_cursor(name))?;
        let mut want = count.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while want > 0 {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => match cursor.stream.next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            let n = batch.num_rows() as u64;
            if n <= want {
                want -= n;
                out.push(batch);
            } else {
                out.push(batch.slice(0, want as usize));
                cursor.pending = Some(batch.slice(want as usize, (n - want) as usize));
                want = 0;
            }
        }
        Ok((cursor.schema.clone(), out))
    }

    pub async fn close(&self, name: Option<&str>) -> Result<()> {
        let mut open = self.0.lock().await;
        match name {
            Some(n) => open.remove(n).map(|_| ()).ok_or_else(|| no_such_cursor(n)),
            None => {
                open.clear();
                Ok(())
            }
        }
    }

    /// The transaction block ended: cursors without `WITH HOLD` close.
    pub async fn end_transaction(&self) {
        self.0.lock().await.retain(|_, c| c.hold);
    }
}
