//! Length-prefixed frames on a byte stream: the unit of every control message between grlhf
//! processes (handshakes, weight headers).
//!
//! A frame is `GRLF`, a little-endian `u32` payload length, then the payload. The reader checks
//! the length against its limit *before* allocating, so a peer (or random traffic) announcing a
//! 4 GiB frame costs nothing but a refusal. Bulk bytes (weights) do not travel in frames: their
//! header frame announces them and they follow raw, so no frame ever has to hold a model.

use std::io::{ErrorKind, Read, Write};

use crate::error::FrameError;

/// The four bytes every frame starts with: traffic that is not grlhf's is refused at once.
pub const FRAME_MAGIC: [u8; 4] = *b"GRLF";

/// The default largest control frame: 1 MiB. Handshakes and weight headers are far smaller.
pub const DEFAULT_FRAME_LIMIT: usize = 1 << 20;

/// Writes one frame. Payloads over `u32::MAX` bytes are a caller's bug (bulk bytes go raw).
pub fn write_frame(writer: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: payload.len() as u64,
        limit: u32::MAX as u64,
    })?;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&FRAME_MAGIC);
    head[4..].copy_from_slice(&len.to_le_bytes());
    writer.write_all(&head).map_err(FrameError::Io)?;
    writer.write_all(payload).map_err(FrameError::Io)?;
    writer.flush().map_err(FrameError::Io)
}

/// Reads one frame of at most `limit` payload bytes.
///
/// A stream that ends before the first byte is [`FrameError::Closed`]; one that ends inside a
/// frame is [`FrameError::Truncated`].
pub fn read_frame(reader: &mut impl Read, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; 8];
    let got = read_full(reader, &mut head)?;
    if got == 0 {
        return Err(FrameError::Closed);
    }
    if got < head.len() {
        return Err(FrameError::Truncated {
            expected: head.len() as u64,
            received: got as u64,
        });
    }
    if head[..4] != FRAME_MAGIC {
        return Err(FrameError::BadMagic {
            found: [head[0], head[1], head[2], head[3]],
        });
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > limit {
        return Err(FrameError::TooLarge {
            len: len as u64,
            limit: limit as u64,
        });
    }
    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload)?;
    if got < len {
        return Err(FrameError::Truncated {
            expected: len as u64,
            received: got as u64,
        });
    }
    Ok(payload)
}

/// Writes a value as one JSON frame.
pub fn write_json<T: serde::Serialize>(
    writer: &mut impl Write,
    value: &T,
) -> Result<(), FrameError> {
    let payload = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
    write_frame(writer, &payload)
}

/// Reads one JSON frame as `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(
    reader: &mut impl Read,
    limit: usize,
) -> Result<T, FrameError> {
    let payload = read_frame(reader, limit)?;
    serde_json::from_slice(&payload).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Fills `buf` unless the stream ends first; returns how many bytes were read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(filled)
}
