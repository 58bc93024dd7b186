//! Socket helpers every lean client (and the null sink) shares: reading into
//! and writing from the one buffer a connection keeps each way.
//!
//! Both are cancellation-safe, so a connection's task can `select!` a read
//! on one half of its socket against a write on the other.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::Error;

/// Room made in a read buffer before each read: large reads keep the
/// per-message cost of the system calls small.
pub const READ_CHUNK: usize = 64 * 1024;

/// Reads more bytes into `rbuf`; an error at end of stream.
pub async fn fill(read: &mut OwnedReadHalf, rbuf: &mut BytesMut) -> Result<(), Error> {
    rbuf.reserve(READ_CHUNK);
    let n = read.read_buf(rbuf).await?;
    if n == 0 {
        return Err("the peer closed the connection".into());
    }
    Ok(())
}

/// Writes some of `wbuf` and drops what was written.
pub async fn write_some(write: &mut OwnedWriteHalf, wbuf: &mut BytesMut) -> Result<(), Error> {
    let n = write.write(wbuf).await?;
    if n == 0 {
        return Err("the peer closed the connection".into());
    }
    wbuf.advance(n);
    Ok(())
}
