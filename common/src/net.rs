//! Accepting TCP connections for our servers. Every accepted socket gets `TCP_NODELAY`:
//! requests and replies here are small messages answered at once, and with Nagle's algorithm
//! on, the last small segment of a reply waits for the peer's delayed ACK (about 40 ms per
//! round trip, measured by the bench harness as a 44 ms floor under every query).

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

/// The connections accepted on `listener`, each with `TCP_NODELAY` set.
pub fn incoming_nodelay(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
