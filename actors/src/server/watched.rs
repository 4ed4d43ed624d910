//! A socket's read half that notes when bytes last arrived: a session's replication stream is
//! alive while bytes flow (even in the middle of a record too large to arrive within the
//! timeout), and `--timeout` measures a client's silence from it.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use tokio::io::{AsyncRead, ReadBuf};

/// A read half that notes when bytes last arrived.
pub struct Watched<R> {
    /// The socket's read half.
    pub inner: R,
    /// Set to now whenever bytes arrive; shared with the session.
    pub last_read: Rc<Cell<Instant>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last_read.set(Instant::now());
        }
        polled
    }
}
