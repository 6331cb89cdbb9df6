//! Docker's stdio multiplexing: an 8-byte header `[stream, 0, 0, 0, len(u32 BE)]`
//! before each payload, stream 1 = stdout, 2 = stderr (0 = stdin). ketch's
//! own `POST /containers/run` ends its stream with a frame of stream
//! [`EXIT_STREAM`].

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdStream {
    Stdin,
    Stdout,
    Stderr,
}

impl StdStream {
    pub fn as_str(self) -> &'static str {
        match self {
            StdStream::Stdin => "stdin",
            StdStream::Stdout => "stdout",
            StdStream::Stderr => "stderr",
        }
    }
}

/// The stream byte of the last frame of `POST /containers/run`: its
/// payload is the container's wait response (`{"StatusCode":..}`). Docker
/// uses 0 to 3.
pub const EXIT_STREAM: u8 = 4;

/// Frame one chunk.
pub fn encode(stream: StdStream, payload: &[u8]) -> Bytes {
    encode_raw(stream as u8, payload)
}

/// Frame one chunk of any stream byte.
pub fn encode_raw(stream: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(stream);
    b.put_bytes(0, 3);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// A frame whose stream byte is none of stdin, stdout, stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad stream id {0} in multiplexed stream")]
pub struct FrameError(pub u8);

/// Incremental decoder for a framed stream.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if buffered. An unknown stream byte yields
    /// an error: the peer is not speaking the multiplexed format.
    pub fn next_frame(&mut self) -> Result<Option<(StdStream, Bytes)>, FrameError> {
        match self.next_raw()? {
            None => Ok(None),
            Some((0, d)) => Ok(Some((StdStream::Stdin, d))),
            Some((1, d)) => Ok(Some((StdStream::Stdout, d))),
            Some((2, d)) => Ok(Some((StdStream::Stderr, d))),
            Some((b, _)) => Err(FrameError(b)),
        }
    }

    /// The next complete frame with its stream byte, if buffered. A byte
    /// that is none of stdin, stdout, stderr and [`EXIT_STREAM`] is an
    /// error, as in [`Decoder::next_frame`].
    pub fn next_raw(&mut self) -> Result<Option<(u8, Bytes)>, FrameError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let stream = self.buf[0];
        if stream > EXIT_STREAM || self.buf[1..4] != [0, 0, 0] {
            return Err(FrameError(stream));
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let _ = self.buf.split_to(8);
        Ok(Some((stream, self.buf.split_to(len).freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_split_reads() {
        let mut wire = encode(StdStream::Stdout, b"hello").to_vec();
        wire.extend_from_slice(&encode(StdStream::Stderr, b"err"));
        let mut d = Decoder::default();
        let mut out = vec![];
        for chunk in wire.chunks(3) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(
            out,
            vec![
                (StdStream::Stdout, Bytes::from("hello")),
                (StdStream::Stderr, Bytes::from("err"))
            ]
        );
        let mut bad = Decoder::default();
        bad.push(b"HTTP/1.1 200");
        assert!(bad.next_frame().is_err());
    }
}
