//! HTTP/1.1 message bodies as RFC 9112 frames them, read from a buffer: what the upstream hop
//! ([`crate::pool`]) and the listener ([`crate::h1`]) share. Everything is bounded: chunk-size lines,
//! trailers, lengths (digits only; a chunk size at most 15 hex digits), and nothing is guessed.

use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk-size line (with extensions) taken.
const MAX_CHUNK_LINE: usize = 4096;
/// The most trailer bytes taken (they are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// How a body is framed, and how far it was read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Framing {
    /// Ends after this many more bytes.
    Length(u64),
    Chunked(Chunk),
    /// Ends with the connection (responses only).
    Close,
}

/// Where a chunked body's reading is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// In the trailers, this many bytes of them so far.
    Trailers(usize),
    /// Past the last chunk and the trailers.
    Done,
}

/// What [`Framing::decode`] found in the buffer.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// The next piece of the body.
    Data(Bytes),
    /// Nothing until more is read.
    More,
    /// The body ended (at its length, or after its last chunk).
    End,
}

pub(crate) fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

impl Framing {
    /// Whether the body ended.
    pub(crate) fn done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunk::Done))
    }

    /// Takes the next piece of the body from `buf` (what follows the body stays there).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Decoded> {
        loop {
            match self {
                Framing::Length(0) | Framing::Chunked(Chunk::Done) => return Ok(Decoded::End),
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    if matches!(self, Framing::Chunked(Chunk::Data(0))) {
                        *self = Framing::Chunked(Chunk::DataEnd);
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Framing::Close => {
                    return Ok(if buf.is_empty() { Decoded::More } else { Decoded::Data(buf.split().freeze()) });
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(end) = find_crlf(buf, MAX_CHUNK_LINE)? else { return Ok(Decoded::More) };
                    let size = parse_chunk_size(&buf[..end]).ok_or_else(|| invalid("bad chunk size"))?;
                    buf.advance(end + 2);
                    *self = Framing::Chunked(if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) });
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    buf.advance(2);
                    *self = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers(seen)) => {
                    let Some(end) = find_crlf(buf, MAX_TRAILERS.saturating_sub(*seen))? else {
                        return Ok(Decoded::More);
                    };
                    *seen += end + 2;
                    buf.advance(end + 2);
                    if end == 0 {
                        *self = Framing::Chunked(Chunk::Done);
                    }
                }
            }
        }
    }
}

/// Where the first CRLF is, if within `max` bytes; an error if there is none there and more is buffered.
fn find_crlf(buf: &[u8], max: usize) -> std::io::Result<Option<usize>> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= max => Ok(Some(end)),
        Some(_) => Err(invalid("chunk line or trailers too long")),
        None if buf.len() > max => Err(invalid("chunk line or trailers too long")),
        None => Ok(None),
    }
}

/// A chunk-size line: hex digits (at most 15), then extensions after `;` (ignored).
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A `Content-Length` value: digits only (no sign, no blanks inside), at most 19 of them.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The one length of a message's `Content-Length` headers (several, or comma-joined, must all be the same
/// number): `Ok(None)` without one.
pub(crate) fn content_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in values {
        for v in value.split(|&b| b == b',') {
            let n = parse_length(v).ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("Content-Length values differ");
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Whether a comma-separated header value holds `token` (any case).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`.
pub(crate) fn ends_chunked(value: &[u8]) -> bool {
    value.rsplit(|&b| b == b',').next().is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Appends a chunk's size line to `out`.
pub(crate) fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
}

/// Decodes a chunked body from `wire` fed to the decoder `step` bytes at a time (at least 1), for the fuzz
/// targets: the body and what follows it, `None` if it is malformed or does not end within `wire`.
#[doc(hidden)]
pub fn decode_chunked(wire: &[u8], step: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut framing = Framing::Chunked(Chunk::Size);
    let (mut buf, mut fed, mut body) = (BytesMut::new(), 0, Vec::new());
    loop {
        match framing.decode(&mut buf).ok()? {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::End => {
                buf.extend_from_slice(&wire[fed..]);
                return Some((body, buf.to_vec()));
            }
            Decoded::More if fed == wire.len() => return None,
            Decoded::More => {
                let next = (fed + step.max(1)).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_length_is_digits_only_and_one_number() {
        assert_eq!(parse_length(b"42"), Some(42));
        assert_eq!(parse_length(b" 7 "), Some(7));
        for bad in [&b""[..], b"-1", b"+1", b"1 2", b"0x10", b"99999999999999999999"] {
            assert_eq!(parse_length(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(content_length([&b"5"[..], b"5, 5"].into_iter()), Ok(Some(5)));
        assert!(content_length([&b"5"[..], b"6"].into_iter()).is_err());
        assert_eq!(content_length(std::iter::empty()), Ok(None));
    }

    #[test]
    fn a_chunk_size_is_bounded_hex_with_extensions_ignored() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"A;name=value"), Some(10));
        for bad in [&b""[..], b"g", b"-1", b" 1", b"1000000000000000", b";x"] {
            assert_eq!(parse_chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_chunked_body_decodes_across_any_split_and_leaves_what_follows() {
        let wire = b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut framing = Framing::Chunked(Chunk::Size);
            let mut buf = BytesMut::from(&wire[..split]);
            let mut body = Vec::new();
            let mut fed = false;
            loop {
                match framing.decode(&mut buf).expect("valid") {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::More if !fed => {
                        buf.extend_from_slice(&wire[split..]);
                        fed = true;
                    }
                    Decoded::More => panic!("stuck at split {split}"),
                    Decoded::End => break,
                }
            }
            if !fed {
                buf.extend_from_slice(&wire[split..]);
            }
            assert_eq!(body, b"hello world", "split {split}");
            assert_eq!(&buf[..], b"NEXT", "split {split}");
        }
    }

    #[test]
    fn a_chunk_overrun_or_an_endless_size_line_is_an_error() {
        let mut f = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::from(&b"2\r\nabc\r\n"[..]);
        assert!(matches!(f.decode(&mut buf), Ok(Decoded::Data(_))));
        assert!(f.decode(&mut buf).is_err(), "data past the chunk size");
        let mut f = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::from(vec![b'1'; MAX_CHUNK_LINE + 2].as_slice());
        assert!(f.decode(&mut buf).is_err(), "a size line without end");
    }
}
