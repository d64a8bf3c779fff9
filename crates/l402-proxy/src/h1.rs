//! The listener's HTTP/1.1, read and written here (plain TCP; TLS connections and HTTP/2 go to hyper).
//!
//! A connection's first bytes tell HTTP/2's preface from HTTP/1.x ([`sniff`]). Then each request head is
//! read within `header_read_timeout_secs` (the first from the accept, each next one from the end of the
//! answer before: a keep-alive connection waiting is bounded the same way) and at most `max_header_bytes`
//! long (else 431), and parsed by `httparse`; what is not HTTP/1.x is a 400 and the connection closes. A
//! request body is framed as RFC 9112 section 6 says and nothing ambiguous is taken: `Transfer-Encoding` with
//! `Content-Length`, a coding other than a final `chunked`, `Transfer-Encoding` in HTTP/1.0, or lengths that
//! differ are a 400 (the request-smuggling forms). `Expect: 100-continue` is answered at once.
//!
//! The answer is framed from its body: `Content-Length` when its size is known, else chunked (HTTP/1.0:
//! ended by the close); none for `HEAD`, 1xx, 204 and 304. A connection is kept alive unless the client asked
//! to close it (HTTP/1.0: unless it asked to keep it), the answer's body failed, or the request's body was
//! not read to its end and more than [`DRAIN`] bytes of it are left. Pipelined requests are answered in order.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::codec::{self, Chunk, Decoded, Framing};
use crate::proxy::State;

/// The most request headers taken (hyper's default too).
const MAX_HEADERS: usize = 100;
/// What a read asks for at least.
const READ_SIZE: usize = 8 * 1024;
/// Response body data at least this large is written as it is, not copied after the head.
const WRITE_THROUGH: usize = 8 * 1024;
/// The most of an unread request body read and dropped to keep its connection.
const DRAIN: u64 = 64 * 1024;
/// HTTP/2's connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The listener's bounds on HTTP/1.1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) header_timeout: Duration,
    pub(crate) max_head: usize,
}

/// What a connection's first bytes are.
pub(crate) enum Sniffed {
    /// HTTP/1.x; what was read so far.
    Http1(TcpStream, BytesMut),
    /// HTTP/2 (prior knowledge): the stream with the bytes read so far put back before it.
    Http2(Rewound),
    /// Closed, or nothing in time.
    Gone,
}

/// Reads until the first bytes tell HTTP/2's preface from anything else, by `deadline`.
pub(crate) async fn sniff(mut io: TcpStream, deadline: Instant) -> Sniffed {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        let n = buf.len().min(PREFACE.len());
        if n > 0 && buf[..n] != PREFACE[..n] {
            return Sniffed::Http1(io, buf);
        }
        if n == PREFACE.len() {
            return Sniffed::Http2(Rewound { prefix: buf.freeze(), io });
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Sniffed::Gone,
            Ok(Ok(_)) => {}
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub(crate) struct Rewound {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if !me.prefix.is_empty() {
            let n = me.prefix.len().min(out.remaining());
            out.put_slice(&me.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The read side of a connection and what was read from it and not used yet.
struct Reader {
    io: OwnedReadHalf,
    buf: BytesMut,
    /// The framing of the request body being read, `None` when there is none left to read.
    body: Option<Framing>,
}

/// Where a request body gives the reader back when it is dropped.
type Slot = Arc<Mutex<Option<Reader>>>;

/// A request's body as the client sends it, read from the connection as it is polled.
pub(crate) struct RequestBody {
    reader: Option<Reader>,
    slot: Slot,
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let (Some(reader), Ok(mut slot)) = (self.reader.take(), self.slot.lock()) {
            *slot = Some(reader);
        }
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let Some(r) = &mut self.get_mut().reader else { return Poll::Ready(None) };
        loop {
            let Some(framing) = &mut r.body else { return Poll::Ready(None) };
            match framing.decode(&mut r.buf) {
                Ok(Decoded::Data(data)) => {
                    if framing.done() {
                        r.body = None;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    r.body = None;
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {
                    r.buf.reserve(READ_SIZE);
                    match tokio_util::io::poll_read_buf(Pin::new(&mut r.io), cx, &mut r.buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Some(Err(codec::invalid("the client closed in its request body"))));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    }
                }
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.body.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader.as_ref().and_then(|r| r.body) {
            None => SizeHint::with_exact(0),
            Some(Framing::Length(n)) => SizeHint::with_exact(n),
            Some(_) => SizeHint::default(),
        }
    }
}

/// A request body: hyper's (TLS, HTTP/2) or ours.
pub(crate) enum Incoming {
    Hyper(hyper::body::Incoming),
    Own(RequestBody),
    /// No body (ours).
    Empty,
}

impl hyper::body::Body for Incoming {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Incoming::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Incoming::Own(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Incoming::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Incoming::Hyper(b) => b.is_end_stream(),
            Incoming::Own(b) => b.is_end_stream(),
            Incoming::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Incoming::Hyper(b) => b.size_hint(),
            Incoming::Own(b) => b.size_hint(),
            Incoming::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Why no request came.
enum Refused {
    /// The connection closed, failed, or sent nothing in time: closed without a word.
    Gone,
    /// 400 or 431, then closed.
    Status(StatusCode),
}

/// A request head, parsed.
struct Head {
    request: http::request::Parts,
    framing: Option<Framing>,
    keep: bool,
    http10: bool,
    expect_continue: bool,
}

/// Serves HTTP/1.x on `io` (`buf`: what was read of it already) until the connection ends.
pub(crate) async fn serve(state: Arc<State>, io: TcpStream, buf: BytesMut, peer: SocketAddr, limits: Limits) {
    let (rd, mut wr) = io.into_split();
    let mut reader = Some(Reader { io: rd, buf, body: None });
    let slot: Slot = Arc::new(Mutex::new(None));
    let mut deadline = Instant::now() + limits.header_timeout;
    while let Some(r) = reader.as_mut() {
        let head = match tokio::time::timeout_at(deadline, read_head(r, limits.max_head)).await {
            Ok(Ok(h)) => h,
            Ok(Err(Refused::Status(status))) => {
                let _ = wr.write_all(refusal(status).as_bytes()).await;
                return;
            }
            Ok(Err(Refused::Gone)) | Err(_) => return,
        };
        let head_request = head.request.method == Method::HEAD;
        let body = match (head.framing, reader.take()) {
            (Some(framing), Some(mut r)) => {
                if head.expect_continue && wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
                r.body = Some(framing);
                Incoming::Own(RequestBody { reader: Some(r), slot: slot.clone() })
            }
            (_, r) => {
                reader = r;
                Incoming::Empty
            }
        };
        let response = crate::proxy::handle(state.clone(), peer, Request::from_parts(head.request, body)).await;
        // The handler is done with the body (dropped: it gave the reader back), or still holds it: then the
        // connection ends with this answer.
        if reader.is_none() {
            reader = slot.lock().ok().and_then(|mut s| s.take());
        }
        let keep = head.keep && reader.as_ref().is_some_and(drainable);
        let watch = reader.as_mut().map(|r| (r, limits.max_head));
        match write_response(&mut wr, response, head_request, keep, head.http10, watch).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        deadline = Instant::now() + limits.header_timeout;
        if let Some(r) = reader.as_mut().filter(|r| r.body.is_some()) {
            if tokio::time::timeout_at(deadline, drain(r)).await.map_or(true, |d| d.is_err()) {
                return;
            }
        }
    }
}

/// Whether what is left of an unread request body is small enough to be read and dropped.
fn drainable(r: &Reader) -> bool {
    match r.body {
        None => true,
        Some(Framing::Length(n)) => n <= DRAIN,
        Some(_) => false,
    }
}

/// Reads what is left of a request body (at most [`DRAIN`] bytes: see [`drainable`]) and drops it.
async fn drain(r: &mut Reader) -> std::io::Result<()> {
    while let Some(framing) = &mut r.body {
        match framing.decode(&mut r.buf)? {
            Decoded::Data(_) if framing.done() => r.body = None,
            Decoded::Data(_) => {}
            Decoded::End => r.body = None,
            Decoded::More => {
                r.buf.reserve(READ_SIZE);
                if r.io.read_buf(&mut r.buf).await? == 0 {
                    return Err(codec::invalid("closed in a request body"));
                }
            }
        }
    }
    Ok(())
}

fn refusal(status: StatusCode) -> String {
    format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// Reads and parses the next request head.
async fn read_head(r: &mut Reader, max_head: usize) -> Result<Head, Refused> {
    loop {
        if !r.buf.is_empty() {
            if let Some(head) = parse_head(&mut r.buf, max_head)? {
                return Ok(head);
            }
        }
        if r.buf.len() >= max_head {
            return Err(Refused::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        r.buf.reserve(READ_SIZE);
        match r.io.read_buf(&mut r.buf).await {
            Ok(0) | Err(_) => return Err(Refused::Gone),
            Ok(_) => {}
        }
    }
}

/// A complete request head at the start of `buf` (taken from it), or `None` while it is partial.
fn parse_head(buf: &mut BytesMut, max_head: usize) -> Result<Option<Head>, Refused> {
    let bad = || Refused::Status(StatusCode::BAD_REQUEST);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        Err(_) => return Err(bad()),
    };
    if len > max_head {
        return Err(Refused::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad())?;
    let http10 = req.version == Some(0);
    // Where the target and each header are in the head, so that they can share its bytes.
    let base = buf.as_ptr() as usize;
    let target = req.path.unwrap_or("");
    let target = (target.as_ptr() as usize - base, target.len());
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = req.headers.len();
    for (span, h) in spans.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *span = (name, name + h.name.len(), value, value + h.value.len());
    }
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)).map_err(|_| bad())?;
    let mut headers = HeaderMap::with_capacity(count);
    let (mut length, mut coded, mut chunked) = (None::<u64>, false, false);
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for &(n0, n1, v0, v1) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[n0..n1]).map_err(|_| bad())?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0..v1)).map_err(|_| bad())?;
        if name == CONTENT_LENGTH {
            let n = codec::content_length(std::iter::once(value.as_bytes())).map_err(|_| bad())?;
            if length.is_some() && length != n {
                return Err(bad());
            }
            length = n;
        } else if name == TRANSFER_ENCODING {
            // Several of them are one list: only the very last coding counts.
            coded = true;
            chunked = codec::ends_chunked(value.as_bytes());
        } else if name == CONNECTION {
            close |= codec::has_token(value.as_bytes(), "close");
            keep_alive |= codec::has_token(value.as_bytes(), "keep-alive");
        } else if name == EXPECT {
            expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    if coded && (length.is_some() || !chunked || http10) {
        return Err(bad());
    }
    let framing = if coded {
        Some(Framing::Chunked(Chunk::Size))
    } else {
        match length {
            None | Some(0) => None,
            Some(n) => Some(Framing::Length(n)),
        }
    };
    let mut request = Request::new(()).into_parts().0;
    request.method = method;
    request.uri = uri;
    request.version = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
    request.headers = headers;
    let keep = if http10 { keep_alive && !close } else { !close };
    Ok(Some(Head { request, framing, keep, http10, expect_continue: expect_continue && !http10 }))
}

/// Returns when the client closed its side (or the connection failed); reads what it sends meanwhile (a
/// pipelined request) into the buffer, up to `cap` bytes, then only waits.
async fn client_gone(watch: Option<(&mut Reader, usize)>) {
    let Some((r, cap)) = watch else { return std::future::pending().await };
    loop {
        if r.buf.len() >= cap {
            return std::future::pending().await;
        }
        r.buf.reserve(READ_SIZE);
        if matches!(r.io.read_buf(&mut r.buf).await, Ok(0) | Err(_)) {
            return;
        }
    }
}

/// A request head as the listener takes it (for the fuzz targets).
#[doc(hidden)]
#[derive(Debug)]
pub struct ParsedHead {
    pub parts: http::request::Parts,
    pub body: BodyFraming,
    /// The head's length in bytes.
    pub len: usize,
}

/// How a request's body is framed (for the fuzz targets).
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// The listener's parse of a request head, for the fuzz targets: `Ok(None)` while the head is partial;
/// `Err` with the status it is refused with.
#[doc(hidden)]
pub fn parse_request_head(bytes: &[u8], max_head: usize) -> Result<Option<ParsedHead>, u16> {
    let mut buf = BytesMut::from(bytes);
    match parse_head(&mut buf, max_head) {
        Ok(None) => Ok(None),
        Ok(Some(h)) => {
            let body = match h.framing {
                None => BodyFraming::None,
                Some(Framing::Length(n)) => BodyFraming::Length(n),
                Some(_) => BodyFraming::Chunked,
            };
            Ok(Some(ParsedHead { parts: h.request, body, len: bytes.len() - buf.len() }))
        }
        Err(Refused::Status(s)) => Err(s.as_u16()),
        Err(Refused::Gone) => Err(0),
    }
}

/// Writes an answer; `Ok(false)` when the connection must close after it. While the body is waited for,
/// `watch` (the connection's reader, and how much it may buffer) tells whether the client went away: then the
/// body is dropped (a metered one settles) and the connection closes.
async fn write_response(
    wr: &mut OwnedWriteHalf,
    response: Response<Body>,
    head_request: bool,
    mut keep: bool,
    http10: bool,
    mut watch: Option<(&mut Reader, usize)>,
) -> std::io::Result<bool> {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let bodiless = head_request || status.is_informational() || matches!(status.as_u16(), 204 | 304);
    let exact = body.size_hint().exact();
    let chunked = !bodiless && exact.is_none() && !http10;
    if !bodiless && exact.is_none() && http10 {
        keep = false; // ended by the close
    }
    let mut out = Vec::with_capacity(256 + parts.headers.len() * 48 + exact.map_or(0, |n| n.min(16 * 1024) as usize));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // Ours to set; a `HEAD` answer keeps the length a `GET` would have had.
        let framing = *name == CONTENT_LENGTH && !head_request;
        if framing || *name == TRANSFER_ENCODING || *name == CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        date(&mut out);
        out.extend_from_slice(b"\r\n");
    }
    let mut left = None;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if let (false, Some(n)) = (bodiless, exact) {
        content_length(&mut out, n);
        left = Some(n);
    } else if let (true, Some(n)) = (head_request, exact) {
        // Our own answers to `HEAD` (a challenge, an error) say how long the `GET` one would be.
        if n > 0 && !parts.headers.contains_key(CONTENT_LENGTH) {
            content_length(&mut out, n);
        }
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        wr.write_all(&out).await?;
        return Ok(keep);
    }
    let mut body = std::pin::pin!(body);
    while !body.is_end_stream() {
        // What is ready goes out with the head; before waiting for more, what we have is sent.
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                if !out.is_empty() {
                    wr.write_all(&out).await?;
                    out.clear();
                }
                let watching = watch.as_mut().map(|(r, cap)| (&mut **r, *cap));
                tokio::select! {
                    frame = body.frame() => frame,
                    () = client_gone(watching) => return Err(codec::invalid("the client went away")),
                }
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(std::io::Error::other)?;
        let Ok(data) = frame.into_data() else { continue }; // trailers: not sent over HTTP/1.1
        if data.is_empty() {
            continue;
        }
        if let Some(n) = &mut left {
            *n = n.checked_sub(data.len() as u64).ok_or_else(|| codec::invalid("a body longer than its length"))?;
        }
        if chunked {
            codec::chunk_size_line(&mut out, data.len());
        }
        if data.len() >= WRITE_THROUGH {
            wr.write_all(&out).await?;
            out.clear();
            wr.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if left.is_some_and(|n| n > 0) {
        return Err(codec::invalid("a body shorter than its length"));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        wr.write_all(&out).await?;
    }
    Ok(keep)
}

fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value of the current second, on this thread.
    static DATE_NOW: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current time as an IMF-fixdate (29 bytes), made once a second per thread.
fn date(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_NOW.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                d.1.copy_from_slice(text.as_bytes());
                d.0 = secs;
            }
        }
        out.extend_from_slice(&d.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<Option<Head>, Refused> {
        parse_head(&mut BytesMut::from(bytes), 64 * 1024)
    }

    fn status(r: Result<Option<Head>, Refused>) -> u16 {
        match r {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(Refused::Status(s)) => s.as_u16(),
            Err(Refused::Gone) => 1,
        }
    }

    #[test]
    fn the_request_smuggling_forms_are_a_400() {
        for bytes in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        ] {
            assert_eq!(status(head(bytes)), 400, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_body_is_framed_by_its_one_length_or_a_final_chunked() {
        let h = head(b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello")
            .ok()
            .flatten()
            .expect("a head");
        assert!(matches!(h.framing, Some(Framing::Length(5))));
        assert_eq!(h.request.uri, "/a?b");
        assert!(h.keep);
        let h = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
            .ok()
            .flatten()
            .expect("a head");
        assert!(matches!(h.framing, Some(Framing::Chunked(Chunk::Size))));
        let h = head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").ok().flatten().expect("a head");
        assert!(h.framing.is_none() && h.keep && h.http10);
        let h = head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").ok().flatten().expect("a head");
        assert!(!h.keep);
        assert_eq!(status(head(b"GET / HTTP/1.1\r\nHost: x\r\n")), 0, "partial");
    }

    #[test]
    fn too_many_headers_is_a_431() {
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        assert_eq!(status(head(&bytes)), 431);
    }
}
