//! Length-delimited frames: an unsigned varint with the byte length, then the protobuf message.
//!
//! The reader never trusts the declared length: it refuses anything over the cap before it
//! allocates, and makes room for the whole body only once its first 64 KiB have arrived, so a
//! peer that announces a large frame and then stalls holds at most that much.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    TooLarge { len: u64, max: usize },
    #[error("invalid frame length prefix (varint longer than 10 bytes)")]
    BadLength,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("undecodable message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// How much of a frame's body is read before room for all of it is made.
const FIRST_READ: usize = 64 * 1024;

/// Reads one frame's bytes. `Ok(None)` is a clean end of stream at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len: u64 = 0;
    let mut shift = 0u32;
    let mut first = true;
    loop {
        let mut b = [0u8; 1];
        let n = r.read(&mut b).await?;
        if n == 0 {
            return if first {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        first = false;
        if shift >= 63 {
            return Err(FrameError::BadLength);
        }
        len |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let len = len as usize;
    // The first 64 KiB before the declared length is believed; then room for the rest at once
    // (growing by doubling would copy a 1 MiB frame four times over).
    let first = len.min(FIRST_READ);
    let mut buf = Vec::with_capacity(first);
    let mut body = r.take(len as u64);
    while buf.len() < first {
        if body.read_buf(&mut buf).await? == 0 {
            return Err(FrameError::Truncated);
        }
    }
    buf.reserve_exact(len - buf.len());
    body.read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(Some(buf))
}

/// True when `buf` starts with a whole frame (length prefix and body), so reading it from a
/// buffered reader holding `buf` completes without waiting for the socket.
pub fn starts_with_frame(buf: &[u8]) -> bool {
    let mut len: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (buf.len() - i - 1) as u64 >= len;
        }
    }
    false
}

/// Reads and decodes one message. `Ok(None)` is a clean end of stream.
pub async fn read_message<M: Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<M>, FrameError> {
    match read_frame(r, max).await? {
        None => Ok(None),
        // From `Bytes`, so `bytes` fields share the frame's buffer instead of copying it.
        Some(buf) => Ok(Some(M::decode(prost::bytes::Bytes::from(buf))?)),
    }
}

/// Encodes `msg` as one frame (length prefix + body).
pub fn encode_frame<M: Message>(msg: &M) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_into(msg, &mut out);
    out
}

/// Appends `msg` as one frame (length prefix + body) to `out`.
pub fn encode_frame_into<M: Message>(msg: &M, out: &mut Vec<u8>) {
    let body_len = msg.encoded_len();
    out.reserve(body_len + 10);
    let mut lenbuf = [0u8; 10];
    out.extend_from_slice(encode_len(body_len as u64, &mut lenbuf));
    // Encoding into a Vec cannot fail: it grows as needed.
    let _ = msg.encode(out);
}

/// Writes one message as a frame and flushes.
pub async fn write_message<M: Message, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &M,
) -> std::io::Result<()> {
    w.write_all(&encode_frame(msg)).await?;
    w.flush().await
}

fn encode_len(mut n: u64, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[i] = byte;
            return &buf[..=i];
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_a_whole_frame_from_a_partial_one() {
        let f = encode_frame(&crate::control::Hello {
            protocol_version: 1,
            agent: "x".repeat(200),
            peer_id: String::new(),
        });
        assert!(starts_with_frame(&f));
        assert!(!starts_with_frame(&f[..f.len() - 1]));
        assert!(!starts_with_frame(&f[..1]));
        assert!(!starts_with_frame(&[]));
    }
    use crate::control::{ClientFrame, Hello};

    #[tokio::test]
    async fn large_frames_arrive_whole_in_pieces_and_truncation_is_an_error() {
        let msg = crate::control::BlockData {
            data: (0..(1 << 20) + 17)
                .map(|i| i as u8)
                .collect::<Vec<u8>>()
                .into(),
        };
        let bytes = encode_frame(&msg);
        let (mut w, mut r) = tokio::io::duplex(4096);
        let sent = bytes.clone();
        let writer = tokio::spawn(async move { w.write_all(&sent).await });
        let got: crate::control::BlockData = read_message(&mut r, 2 << 20).await.unwrap().unwrap();
        assert_eq!(got, msg);
        writer.await.unwrap().unwrap();
        for cut in [3, 1000, 70_000, bytes.len() - 1] {
            let mut short = &bytes[..cut];
            assert!(matches!(
                read_frame(&mut short, 2 << 20).await,
                Err(FrameError::Truncated)
            ));
        }
    }

    #[tokio::test]
    async fn round_trip_and_limits() {
        let hello = ClientFrame {
            frame: Some(crate::control::client_frame::Frame::Hello(Hello {
                protocol_version: 1,
                agent: "t".into(),
                peer_id: String::new(),
            })),
        };
        let bytes = encode_frame(&hello);
        let mut r = bytes.as_slice();
        let got: ClientFrame = read_message(&mut r, 1024).await.unwrap().unwrap();
        assert_eq!(got, hello);
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 10).await.unwrap().is_none());
        let mut big: &[u8] = &[0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            read_frame(&mut big, 1024).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut short: &[u8] = &[5, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 1024).await,
            Err(FrameError::Truncated)
        ));
        let mut endless: &[u8] = &[0xff; 12];
        assert!(matches!(
            read_frame(&mut endless, 1024).await,
            Err(FrameError::BadLength)
        ));
    }
}
