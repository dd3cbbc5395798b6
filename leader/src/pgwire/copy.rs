//! `COPY ... FROM STDIN`: the client's CopyData messages feed the load the statement
//! started; CopyDone commits it; CopyFail, or a client that goes away before CopyDone, aborts
//! it (nothing is committed).

use super::*;
use crate::session::CopyChunk;

/// The `COPY ... FROM STDIN` a session is in the middle of.
pub(super) struct CopyInState(pub(super) std::sync::Mutex<Option<CopyInLoad>>);

impl CopyInState {
    fn take(&self) -> Option<CopyInLoad> {
        match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    fn sender(&self) -> Option<tokio::sync::mpsc::Sender<CopyChunk>> {
        match self.0.lock() {
            Ok(g) => g.as_ref().map(|l| l.data.clone()),
            Err(p) => p.into_inner().as_ref().map(|l| l.data.clone()),
        }
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sender = client
            .session_extensions()
            .get::<CopyInState>()
            .and_then(|s| s.sender());
        // A closed channel means the load already failed; its error comes with CopyDone.
        if let Some(sender) = sender {
            let _ = sender.send(CopyChunk::Data(copy_data.data)).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let load = client
            .session_extensions()
            .get::<CopyInState>()
            .and_then(|s| s.take())
            .ok_or_else(|| {
                user_error(Error::sql(
                    blueshift_common::error::sqlstate::INTERNAL_ERROR,
                    "CopyDone without a COPY in progress",
                ))
            })?;
        // End of data: the parser sees EOF, the load commits. (Without this the channel's
        // closing would be a disconnect, and the load would fail.)
        let _ = load.data.send(CopyChunk::Done).await;
        drop(load.data);
        let rows = load
            .task
            .await
            .map_err(|e| {
                user_error(Error::sql(
                    blueshift_common::error::sqlstate::INTERNAL_ERROR,
                    format!("COPY task failed: {e}"),
                ))
            })?
            .map_err(user_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Abort before the data channel closes, so nothing is committed.
        if let Some(load) = client
            .session_extensions()
            .get::<CopyInState>()
            .and_then(|s| s.take())
        {
            load.task.abort();
        }
        user_error(Error::sql(
            blueshift_common::error::sqlstate::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}
