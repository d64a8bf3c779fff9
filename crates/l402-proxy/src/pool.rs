//! Connections to a plain `http://` upstream: HTTP/1.1 over TCP, written and read here, kept alive and pooled
//! per thread.
//!
//! Each worker thread has pools of its own ([`crate::forward`]), so a request and its upstream connection run
//! on one thread, and a pool is only ever locked by its own thread (an uncontended lock, there because
//! response bodies must be `Send`). A connection has no task of its own: the request that uses it writes its
//! head and body, reads the response head, and its response body reads the rest, so an exchange costs no
//! task wake-up and no channel between tasks.
//!
//! The response is framed as RFC 9112 section 6 says, and nothing ambiguous is passed on: a response to
//! `HEAD`, a 1xx, 204 or 304 has no body; `Transfer-Encoding` ending in `chunked` is decoded (trailers are
//! read and dropped), any other coding is read to the close; else `Content-Length`, whose values must all be
//! the same number; else the body ends with the connection. `Transfer-Encoding` with `Content-Length`, a
//! `101` (no upgrade was asked for), a head over [`MAX_HEAD`] or a malformed chunk is an error (502), never a
//! guess. Interim 1xx responses are skipped.
//!
//! A connection goes back to its pool when its response was read to the end, the upstream did not ask to
//! close it, and it sent nothing more; one whose body was dropped half read is closed. An idle connection
//! is looked at when it is taken: one the upstream closed (or wrote to) meanwhile is dropped for the next.
//! A body-less idempotent request that found its reused connection closed before any byte of an answer is
//! sent once more on a new connection: the upstream closed it as it was picked, and never saw the request.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{self, Chunk, Decoded, Framing};
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Idle connections kept per upstream and thread (nginx's `keepalive` is per worker too).
const MAX_IDLE: usize = 256;
/// The largest response head (status line and headers) taken from an upstream.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most response headers taken.
const MAX_HEADERS: usize = 128;
/// What a read asks for at least.
const READ_SIZE: usize = 16 * 1024;
/// Request body data at least this large is written as it is, not copied into the head's buffer.
const WRITE_THROUGH: usize = 8 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection and what was read from it and not yet used.
struct Link {
    io: TcpStream,
    buf: BytesMut,
}

impl Link {
    /// Whether an idle connection can still carry a request: the upstream neither closed it nor wrote to it
    /// since its last answer. Costs no system call unless the socket was reported readable.
    fn usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Reads more into the buffer; 0 at the end of the stream.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.io.read_buf(&mut self.buf).await
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        self.buf.reserve(READ_SIZE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// One upstream's idle connections on one thread.
#[derive(Clone)]
pub(crate) struct Pool {
    /// `host:port`, connected to (shared: a request takes its thread's pool by cloning it).
    authority: Arc<str>,
    idle: Arc<Mutex<Vec<Link>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("authority", &self.authority).finish_non_exhaustive()
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The exchange failed: the connection, or an answer that is not HTTP/1.1 as it must be.
    Exchange(std::io::Error),
    /// The request's body failed (cut at its limit, or the client's stream broke).
    Body(BoxError),
}

fn invalid(what: &str) -> std::io::Error {
    codec::invalid(&format!("upstream: {what}"))
}

/// How the request body is sent.
#[derive(Clone, Copy)]
enum Sending {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    Chunked,
}

impl Pool {
    pub(crate) fn new(authority: String) -> Self {
        Self { authority: authority.into(), idle: Arc::new(Mutex::new(Vec::new())) }
    }

    /// An idle connection still usable, if there is one.
    fn take_idle(&self) -> Option<Link> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut link) = idle.pop() {
            if link.usable() {
                return Some(link);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Link, PoolError> {
        let io = TcpStream::connect(&*self.authority).await.map_err(PoolError::Connect)?;
        let _ = io.set_nodelay(true);
        Ok(Link { io, buf: BytesMut::with_capacity(READ_SIZE) })
    }

    /// Sends `req` (origin-form URI, `Host` set; its own `Content-Length` and `Transfer-Encoding` are not
    /// used: the body's framing is ours) and returns the response, whose body reads the rest of the answer
    /// and gives the connection back when it ends.
    pub(crate) async fn send<B>(&self, req: Request<B>) -> Result<Response<UpstreamBody>, PoolError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let sending = match (body.is_end_stream(), body.size_hint().exact()) {
            (true, _) | (false, Some(0)) => Sending::Empty,
            (false, Some(n)) => Sending::Length(n),
            (false, None) => Sending::Chunked,
        };
        let head = encode_head(&parts, sending);
        let head_only = parts.method == Method::HEAD;
        // Sent again on a new connection if the reused one turns out closed (module doc).
        let resendable = matches!(sending, Sending::Empty) && parts.method.is_idempotent();
        let mut body = Some(body);
        loop {
            let (mut link, reused) = match self.take_idle() {
                Some(l) => (l, true),
                None => (self.connect().await?, false),
            };
            let written = match body.take() {
                Some(b) if !matches!(sending, Sending::Empty) => {
                    write_with_body(&mut link.io, head.clone(), b, sending).await
                }
                _ => link.io.write_all(&head).await.map_err(PoolError::Exchange),
            };
            if let Err(e) = written {
                if reused && resendable && matches!(e, PoolError::Exchange(_)) {
                    continue;
                }
                return Err(e);
            }
            match read_head(&mut link, head_only).await {
                Ok((parts, framing, keep)) => {
                    return Ok(Response::from_parts(parts, UpstreamBody::new(link, framing, keep, self.idle.clone())));
                }
                Err(Unanswered::Closed) if reused && resendable => continue,
                Err(Unanswered::Closed) => {
                    return Err(PoolError::Exchange(invalid("closed the connection without an answer")));
                }
                Err(Unanswered::Failed(e)) => return Err(PoolError::Exchange(e)),
            }
        }
    }
}

/// The request head, framing ours.
fn encode_head(parts: &http::request::Parts, sending: Sending) -> Vec<u8> {
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut head = Vec::with_capacity(256 + parts.headers.len() * 32);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(pq.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Empty if !matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) => {}
        Sending::Empty => head.extend_from_slice(b"content-length: 0\r\n"),
        Sending::Length(n) => {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(n.to_string().as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Sending::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes the head and the body, framed as `sending` says; a body longer or shorter than its length is an
/// error (the connection is then dropped).
async fn write_with_body<B>(io: &mut TcpStream, mut out: Vec<u8>, body: B, sending: Sending) -> Result<(), PoolError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut left = match sending {
        Sending::Length(n) => Some(n),
        _ => None,
    };
    let chunked = matches!(sending, Sending::Chunked);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PoolError::Body(e.into()))?;
        let Ok(data) = frame.into_data() else { continue }; // trailers: not sent over HTTP/1.1
        if data.is_empty() {
            continue;
        }
        if let Some(n) = &mut left {
            *n = n
                .checked_sub(data.len() as u64)
                .ok_or_else(|| PoolError::Body("the request body is longer than its length".into()))?;
        }
        if chunked {
            codec::chunk_size_line(&mut out, data.len());
        }
        if data.len() >= WRITE_THROUGH {
            io.write_all(&out).await.map_err(PoolError::Exchange)?;
            out.clear();
            io.write_all(&data).await.map_err(PoolError::Exchange)?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_THROUGH {
            io.write_all(&out).await.map_err(PoolError::Exchange)?;
            out.clear();
        }
    }
    if left.is_some_and(|n| n > 0) {
        return Err(PoolError::Body("the request body is shorter than its length".into()));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(&out).await.map_err(PoolError::Exchange)
}

/// Why no response head came.
enum Unanswered {
    /// The connection closed (or was reset) before any byte of an answer.
    Closed,
    Failed(std::io::Error),
}

/// Reads the response head (skipping interim 1xx ones): its parts, how its body is framed (`None`: no
/// body), and whether the connection may carry another request.
async fn read_head(
    link: &mut Link,
    head_only: bool,
) -> Result<(http::response::Parts, Option<Framing>, bool), Unanswered> {
    let mut answered = false;
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let parsed = resp.parse(&link.buf).map_err(|e| Unanswered::Failed(invalid(&format!("bad head: {e}"))))?;
        let httparse::Status::Complete(len) = parsed else {
            if link.buf.len() > MAX_HEAD {
                return Err(Unanswered::Failed(invalid("response head too large")));
            }
            match link.read_more().await {
                Ok(0) if !answered && link.buf.is_empty() => return Err(Unanswered::Closed),
                Ok(0) => return Err(Unanswered::Failed(invalid("closed the connection in the response head"))),
                Ok(_) => answered = true,
                Err(e) if !answered && is_reset(&e) => return Err(Unanswered::Closed),
                Err(e) => return Err(Unanswered::Failed(e)),
            }
            continue;
        };
        if len > MAX_HEAD {
            return Err(Unanswered::Failed(invalid("response head too large")));
        }
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            return Err(Unanswered::Failed(invalid("101 Switching Protocols, and no upgrade was asked for")));
        }
        if (100..200).contains(&code) {
            link.buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| Unanswered::Failed(invalid("bad status")))?;
        let http10 = resp.version == Some(0);
        // Where each header's name and value are in the head, so that the values can share its bytes.
        let base = link.buf.as_ptr() as usize;
        let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
        let count = resp.headers.len();
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (name, name + h.name.len(), value, value + h.value.len());
        }
        let head = link.buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let (mut length, mut chunked, mut coded) = (None::<u64>, false, false);
        let mut keep = !http10;
        for &(n0, n1, v0, v1) in &spans[..count] {
            let bad = || Unanswered::Failed(invalid("bad header"));
            let name = HeaderName::from_bytes(&head[n0..n1]).map_err(|_| bad())?;
            let value = HeaderValue::from_maybe_shared(head.slice(v0..v1)).map_err(|_| bad())?;
            if name == CONTENT_LENGTH {
                let n = codec::content_length(std::iter::once(value.as_bytes()))
                    .map_err(|e| Unanswered::Failed(invalid(e)))?;
                if length.is_some() && length != n {
                    return Err(Unanswered::Failed(invalid("Content-Length values differ")));
                }
                length = n;
            } else if name == TRANSFER_ENCODING {
                coded = true;
                // Only the last coding counts: chunked there, or the body is read to the close.
                chunked = codec::ends_chunked(value.as_bytes());
            } else if name == http::header::CONNECTION {
                if codec::has_token(value.as_bytes(), "close") {
                    keep = false;
                } else if http10 && codec::has_token(value.as_bytes(), "keep-alive") {
                    keep = true;
                }
            }
            headers.append(name, value);
        }
        if coded && length.is_some() {
            return Err(Unanswered::Failed(invalid("both Transfer-Encoding and Content-Length")));
        }
        let framing = if head_only || matches!(code, 204 | 304) {
            None
        } else if coded && chunked {
            Some(Framing::Chunked(Chunk::Size))
        } else if coded {
            Some(Framing::Close)
        } else {
            match length {
                Some(0) => None,
                Some(n) => Some(Framing::Length(n)),
                None => Some(Framing::Close),
            }
        };
        if matches!(framing, Some(Framing::Close)) {
            keep = false;
            headers.remove(CONTENT_LENGTH);
        }
        if matches!(framing, Some(Framing::Chunked(_))) {
            headers.remove(TRANSFER_ENCODING);
        }
        let mut parts = Response::new(()).into_parts().0;
        parts.status = status;
        parts.headers = headers;
        return Ok((parts, framing, keep));
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe
    )
}

/// An upstream response body: reads the rest of the answer from its connection and puts the connection back
/// in the pool once read to the end.
pub(crate) struct UpstreamBody {
    /// The connection while the body is being read.
    link: Option<Link>,
    /// `None` once the body ended.
    framing: Option<Framing>,
    keep: bool,
    idle: Arc<Mutex<Vec<Link>>>,
}

impl UpstreamBody {
    fn new(link: Link, framing: Option<Framing>, keep: bool, idle: Arc<Mutex<Vec<Link>>>) -> Self {
        let mut body = Self { link: Some(link), framing, keep, idle };
        if body.framing.is_none() {
            body.finish();
        }
        body
    }

    /// The body ended: its connection goes back if it may carry another request and holds nothing more.
    fn finish(&mut self) {
        self.framing = None;
        if let Some(link) = self.link.take() {
            if self.keep && link.buf.is_empty() {
                if let Ok(mut idle) = self.idle.lock() {
                    if idle.len() < MAX_IDLE {
                        idle.push(link);
                    }
                }
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let me = self.get_mut();
        loop {
            let (Some(framing), Some(link)) = (&mut me.framing, &mut me.link) else { return Poll::Ready(None) };
            let failed = match framing.decode(&mut link.buf) {
                Ok(Decoded::Data(data)) => {
                    if framing.done() {
                        me.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    me.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => match link.poll_read_more(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) if matches!(framing, Framing::Close) => {
                        me.keep = false;
                        me.finish();
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Ok(0)) => invalid("closed the connection in the middle of a body"),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(e)) => e,
                },
                Err(e) => invalid(&e.to_string()),
            };
            me.link = None;
            me.framing = None;
            return Poll::Ready(Some(Err(failed)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            None => SizeHint::with_exact(0),
            Some(Framing::Length(n)) => SizeHint::with_exact(n),
            Some(_) => SizeHint::default(),
        }
    }
}
