//! SPDY/3.1 framing, the part Kubernetes' streaming protocols use.
//!
//! kubectl, client-go and containerd's streaming server multiplex exec,
//! attach and port-forward streams over one SPDY/3.1 connection
//! (moby/spdystream on the Go side). No maintained Rust crate speaks SPDY
//! (the protocol was retired in favour of HTTP/2), so this module is the
//! small codec Sluice needs: the frame types (SYN_STREAM, SYN_REPLY,
//! RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE, DATA) and
//! header blocks, which SPDY/3 compresses with one zlib stream per direction
//! for the whole connection, primed with the protocol's fixed dictionary
//! (flate2's zlib backend: miniz cannot take a dictionary).
//!
//! Pure: [`Codec::decode`] takes bytes and yields frames, [`Codec::encode`]
//! the reverse; the caller owns the socket.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1).
pub const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");

/// Largest frame accepted (header blocks and data alike).
const MAX_FRAME: usize = 1 << 24;

/// DATA / control flag: the sender's half of the stream is finished.
pub const FLAG_FIN: u8 = 0x01;

/// A header block: ordered (name, value) pairs; names lower case.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// Stream id (odd from the client, even from the server).
        stream_id: u32,
        /// Stream this one belongs to (0 for none).
        associated_to: u32,
        /// 3-bit priority.
        priority: u8,
        /// FIN / UNIDIRECTIONAL.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// Stream id.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// Stream id.
        stream_id: u32,
        /// Why (1 protocol error, 5 cancel, ...).
        status: u32,
    },
    /// Connection settings (id, value); read and ignored.
    Settings(Vec<(u32, u32)>),
    /// Liveness check, answered with the same id.
    Ping(u32),
    /// The peer stops opening streams.
    GoAway {
        /// Last stream the sender processed.
        last_good: u32,
        /// Status (0 OK).
        status: u32,
    },
    /// More headers on a stream.
    Headers {
        /// Stream id.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow control credit.
    WindowUpdate {
        /// Stream id (0: the connection).
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// Stream id.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
}

/// Errors of the codec.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame larger than we accept.
    #[error("SPDY frame of {0} bytes is too large")]
    TooLarge(usize),
    /// A malformed frame or header block.
    #[error("invalid SPDY frame: {0}")]
    Invalid(&'static str),
    /// zlib failed on a header block.
    #[error("SPDY header block compression: {0}")]
    Zlib(String),
}

/// One side of a SPDY connection: a compressor for the headers it sends and
/// a decompressor for the headers it receives (each a single zlib stream
/// for the connection's life, as SPDY/3 requires).
pub struct Codec {
    compress: Compress,
    decompress: Decompress,
    inflate_dict_set: bool,
}

impl Codec {
    /// A codec for a new connection.
    pub fn new() -> Result<Self, SpdyError> {
        let mut compress = Compress::new(Compression::default(), true);
        compress
            .set_dictionary(DICTIONARY)
            .map_err(|e| SpdyError::Zlib(e.to_string()))?;
        Ok(Self {
            compress,
            decompress: Decompress::new(true),
            inflate_dict_set: false,
        })
    }

    /// Take one whole frame off the front of `buf`, if it holds one.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if len >= MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = buf.drain(..8 + len).collect();
        let flags = frame[4];
        let body = &frame[8..];
        if frame[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: be32(&frame[0..4]) & 0x7fff_ffff,
                flags,
                data: body.to_vec(),
            }));
        }
        let version = u16::from_be_bytes([frame[0] & 0x7f, frame[1]]);
        if version != 3 {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([frame[2], frame[3]]);
        let need = |n: usize| {
            if body.len() < n {
                Err(SpdyError::Invalid("short control frame"))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            1 => {
                need(10)?;
                Frame::SynStream {
                    stream_id: be32(&body[0..4]) & 0x7fff_ffff,
                    associated_to: be32(&body[4..8]) & 0x7fff_ffff,
                    priority: body[8] >> 5,
                    flags,
                    headers: self.inflate(&body[10..])?,
                }
            }
            2 => {
                need(4)?;
                Frame::SynReply {
                    stream_id: be32(&body[0..4]) & 0x7fff_ffff,
                    flags,
                    headers: self.inflate(&body[4..])?,
                }
            }
            3 => {
                need(8)?;
                Frame::RstStream {
                    stream_id: be32(&body[0..4]) & 0x7fff_ffff,
                    status: be32(&body[4..8]),
                }
            }
            4 => {
                need(4)?;
                let n = be32(&body[0..4]) as usize;
                let entries = body[4..]
                    .chunks_exact(8)
                    .take(n)
                    .map(|e| (be32(&e[0..4]) & 0x00ff_ffff, be32(&e[4..8])))
                    .collect();
                Frame::Settings(entries)
            }
            6 => {
                need(4)?;
                Frame::Ping(be32(&body[0..4]))
            }
            7 => {
                need(4)?;
                Frame::GoAway {
                    last_good: be32(&body[0..4]) & 0x7fff_ffff,
                    status: if body.len() >= 8 { be32(&body[4..8]) } else { 0 },
                }
            }
            8 => {
                need(4)?;
                Frame::Headers {
                    stream_id: be32(&body[0..4]) & 0x7fff_ffff,
                    flags,
                    headers: self.inflate(&body[4..])?,
                }
            }
            9 => {
                need(8)?;
                Frame::WindowUpdate {
                    stream_id: be32(&body[0..4]) & 0x7fff_ffff,
                    delta: be32(&body[4..8]) & 0x7fff_ffff,
                }
            }
            _ => return Err(SpdyError::Invalid("unknown control frame type")),
        }))
    }

    /// The bytes of `frame` on the wire.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, SpdyError> {
        let (kind, flags, body) = match frame {
            Frame::Data { stream_id, flags, data } => {
                if data.len() >= MAX_FRAME {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                return Ok(out);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut b = Vec::new();
                b.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                b.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                b.push((priority & 0x7) << 5);
                b.push(0);
                b.extend(self.deflate(headers)?);
                (1u16, *flags, b)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend(self.deflate(headers)?);
                (2, *flags, b)
            }
            Frame::RstStream { stream_id, status } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                (3, 0, b)
            }
            Frame::Settings(entries) => {
                let mut b = (entries.len() as u32).to_be_bytes().to_vec();
                for (id, value) in entries {
                    b.extend_from_slice(&(id & 0x00ff_ffff).to_be_bytes());
                    b.extend_from_slice(&value.to_be_bytes());
                }
                (4, 0, b)
            }
            Frame::Ping(id) => (6, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway { last_good, status } => {
                let mut b = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                (7, 0, b)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend(self.deflate(headers)?);
                (8, *flags, b)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                (9, 0, b)
            }
        };
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(0x8003u16).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend(body);
        Ok(out)
    }

    /// Serialize and compress a header block (sync flush: the block is
    /// complete in this frame, the zlib stream continues).
    fn deflate(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            let used = (self.compress.total_in() - before_in) as usize;
            input = &input[used..];
            // Done once all input is in and the flush fit in the buffer.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if matches!(status, Status::StreamEnd) {
                break;
            }
        }
        Ok(out)
    }

    /// Decompress and parse a header block.
    fn inflate(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut raw = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            raw.reserve(1024);
            let before_in = self.decompress.total_in();
            let res = self.decompress.decompress_vec(input, &mut raw, FlushDecompress::Sync);
            let used = (self.decompress.total_in() - before_in) as usize;
            input = &input[used..];
            match res {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() && !self.inflate_dict_set => {
                    self.decompress
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Zlib(e.to_string()))?;
                    self.inflate_dict_set = true;
                    continue;
                }
                Err(e) => return Err(SpdyError::Zlib(e.to_string())),
            }
            if raw.len() > MAX_FRAME {
                return Err(SpdyError::TooLarge(raw.len()));
            }
            if input.is_empty() && raw.len() < raw.capacity() {
                break;
            }
            if used == 0 && raw.len() < raw.capacity() {
                break;
            }
        }
        parse_headers(&raw)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An uncompressed header block: count, then length-prefixed names and values.
fn parse_headers(raw: &[u8]) -> Result<Headers, SpdyError> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let end = pos.checked_add(n).filter(|e| *e <= raw.len());
        let end = end.ok_or(SpdyError::Invalid("truncated header block"))?;
        let s = &raw[pos..end];
        pos = end;
        Ok(s)
    };
    let count = be32(take(4)?) as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// The first value of header `name` in `headers`.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frames: &[Frame]) {
        let mut tx = Codec::new().unwrap();
        let mut rx = Codec::new().unwrap();
        let mut wire = Vec::new();
        for f in frames {
            wire.extend(tx.encode(f).unwrap());
        }
        // Fed in awkward pieces, as a socket delivers them.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some(f) = rx.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    #[test]
    fn every_frame_type_round_trips_with_one_zlib_stream_per_direction() {
        let h = |t: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".into(), "8080".into()),
            ]
        };
        roundtrip(&[
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h("error"),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h("data"),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: vec![],
            },
            Frame::WindowUpdate { stream_id: 3, delta: 5 },
            Frame::Ping(7),
            Frame::Settings(vec![(4, 100), (7, 65536)]),
            Frame::Headers {
                stream_id: 1,
                flags: FLAG_FIN,
                headers: h("stdout"),
            },
            Frame::RstStream {
                stream_id: 3,
                status: 5,
            },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
        ]);
    }

    #[test]
    fn known_wire_bytes_of_control_and_data_frames() {
        let mut c = Codec::new().unwrap();
        assert_eq!(
            c.encode(&Frame::Ping(1)).unwrap(),
            [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
        );
        assert_eq!(
            c.encode(&Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: b"ab".to_vec()
            })
            .unwrap(),
            [0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']
        );
        // A zlib stream primed with the dictionary: FDICT set, DICTID = adler32 of it.
        let syn = c
            .encode(&Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into())],
            })
            .unwrap();
        let block = &syn[18..];
        assert_eq!(block[1] & 0x20, 0x20, "FDICT");
        assert_eq!(&block[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = Codec::new().unwrap();
        let mut v2 = vec![0x80, 2, 0, 1, 0, 0, 0, 0];
        assert!(matches!(c.decode(&mut v2), Err(SpdyError::Version(2))));
        let mut short = vec![0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0];
        assert!(c.decode(&mut short).is_err());
        let mut garbage_headers = vec![0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4];
        assert!(c.decode(&mut garbage_headers).is_err());
        // A frame announced but not all here yet: wait for more bytes.
        let mut partial = vec![0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 1];
        assert!(matches!(c.decode(&mut partial), Ok(None)));
        assert_eq!(partial.len(), 9);
        assert!(parse_headers(&[0, 0, 0, 2, 0, 0, 0, 9]).is_err());
    }
}
