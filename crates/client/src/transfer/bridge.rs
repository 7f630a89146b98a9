//! The content pipeline reads with blocking `std::io::Read` on its own
//! threads. A file on disk is read there directly (`ByteReader::into_file`);
//! any other reader the engine hands over is async, and this moves its
//! bytes to the pipeline through a bounded channel, so memory stays bounded
//! whatever the file size.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use stacksync_engine::ByteReader;

/// Size of each piece read from the async side.
const PIECE: usize = 256 * 1024;

/// Reads `content` to its end into `tx`; a read error is sent on as the last
/// item. Returns once everything is sent or the receiving side is gone.
pub(crate) async fn pump(mut content: ByteReader, tx: mpsc::Sender<io::Result<Bytes>>) {
    loop {
        // Uninitialised capacity: a small file costs what it reads, not a
        // zeroed piece.
        let mut buf = BytesMut::with_capacity(PIECE);
        let item = match content.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => Ok(buf.freeze()),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The blocking end: a `Read` over the pieces [`pump`] sends.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(piece) => self.current = piece?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A `Read` that hashes what passes through with unkeyed BLAKE3 when asked
/// (the engine compares uploads against its scan, which hashes unkeyed;
/// the pipeline's own hash is keyed in encrypted workspaces).
pub(crate) struct PlainHashing<R> {
    inner: R,
    hasher: Option<blake3::Hasher>,
}

impl<R: Read> PlainHashing<R> {
    pub(crate) fn new(inner: R, hash: bool) -> PlainHashing<R> {
        PlainHashing {
            inner,
            hasher: hash.then(blake3::Hasher::new),
        }
    }

    /// The unkeyed hash of everything read, if hashing was asked for.
    pub(crate) fn plain_hash(&self) -> Option<[u8; 32]> {
        self.hasher.as_ref().map(|h| *h.finalize().as_bytes())
    }
}

impl<R: Read> Read for PlainHashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}
