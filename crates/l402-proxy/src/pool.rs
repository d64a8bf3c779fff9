//! Connections to a plain `http://` upstream: HTTP/1.1 over TCP, kept alive and pooled per thread.
//!
//! Each worker thread has pools of its own ([`crate::forward`]), so a request and its upstream connection run
//! on one thread, and a pool is only ever locked by its own thread (an uncontended lock, there because
//! response bodies must be `Send`). A connection has no task of its own: the request that uses it drives it
//! (while waiting for the response head, then while its body is read), so an exchange costs no task wake-ups
//! and no channel hop between tasks. A connection goes back to its pool when the response body has been read
//! to its end (or was empty); one whose body was dropped half read is closed. An idle connection is not
//! watched: one the upstream closed meanwhile is found closed when next picked, and a request that could not
//! be sent on it is sent again on another, as it never left.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// Idle connections kept per upstream and thread (nginx's `keepalive` is per worker too).
const MAX_IDLE: usize = 256;

/// The connection future of one upstream connection.
type Conn<B> = http1::Connection<TokioIo<tokio::net::TcpStream>, B>;

/// One connection: the handle requests are sent on, and the connection itself, polled by whoever uses it.
struct Link<B: Body + 'static> {
    sender: http1::SendRequest<B>,
    /// The connection; `None` once it ended (closed, or failed): dropping it tells the sender, so that a
    /// request not sent yet comes back and the link is never reused.
    conn: Option<Pin<Box<Conn<B>>>>,
}

impl<B> Link<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Makes progress on the connection (reads, writes, feeds the response body).
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = &mut self.conn {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                self.conn = None;
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            }
        }
    }
}

/// One upstream's idle connections on one thread.
pub(crate) struct Pool<B: Body + 'static> {
    /// `host:port`, connected to (shared: a request takes its thread's pool by cloning it).
    authority: Arc<str>,
    idle: Arc<Mutex<Vec<Link<B>>>>,
}

impl<B: Body + 'static> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("authority", &self.authority).finish_non_exhaustive()
    }
}

impl<B: Body + 'static> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self { authority: self.authority.clone(), idle: self.idle.clone() }
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The exchange failed (the request was sent, or its body failed).
    Http(hyper::Error),
}

impl<B> Pool<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(authority: String) -> Self {
        Self { authority: authority.into(), idle: Arc::new(Mutex::new(Vec::new())) }
    }

    fn take_idle(&self) -> Option<Link<B>> {
        self.idle.lock().ok()?.pop()
    }

    async fn connect(&self) -> Result<Link<B>, PoolError> {
        let stream = tokio::net::TcpStream::connect(&*self.authority).await.map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(PoolError::Http)?;
        Ok(Link { sender, conn: Some(Box::pin(conn)) })
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response, whose body drives its connection
    /// and gives it back when it ends.
    pub(crate) async fn send(&self, mut req: Request<B>) -> Result<Response<Returning<B>>, PoolError> {
        loop {
            let (mut link, reused) = match self.take_idle() {
                Some(l) => (l, true),
                None => (self.connect().await?, false),
            };
            let ready = std::future::poll_fn(|cx| {
                link.drive(cx);
                link.sender.poll_ready(cx)
            })
            .await;
            if ready.is_err() {
                if reused {
                    continue; // closed by the upstream while idle
                }
                return Err(PoolError::Connect(std::io::Error::other("the new connection closed at once")));
            }
            let mut response = std::pin::pin!(link.sender.try_send_request(req));
            let sent = std::future::poll_fn(|cx| {
                link.drive(cx);
                response.as_mut().poll(cx)
            })
            .await;
            match sent {
                Ok(resp) => {
                    let idle = self.idle.clone();
                    return Ok(resp.map(|body| Returning { body, link: Some(link), idle, done: false }));
                }
                Err(mut e) => match e.take_message() {
                    // Never sent (the connection closed as it was picked): another connection.
                    Some(back) if reused => req = back,
                    _ => return Err(PoolError::Http(e.into_error())),
                },
            }
        }
    }
}

/// An upstream response body that drives its connection and puts it back in the pool once read to the end.
pub(crate) struct Returning<B: Body + 'static> {
    body: Incoming,
    link: Option<Link<B>>,
    idle: Arc<Mutex<Vec<Link<B>>>>,
    done: bool,
}

impl<B: Body + 'static> Returning<B> {
    fn give_back(&mut self) {
        if let Some(link) = self.link.take() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < MAX_IDLE && link.conn.is_some() && !link.sender.is_closed() {
                    idle.push(link);
                }
            }
        }
    }
}

impl<B> Body for Returning<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let me = self.get_mut();
        // What the connection already delivered first; else drive it (it feeds the body) and look again.
        let mut polled = Pin::new(&mut me.body).poll_frame(cx);
        if polled.is_pending() {
            if let Some(link) = &mut me.link {
                link.drive(cx);
                polled = Pin::new(&mut me.body).poll_frame(cx);
            }
        }
        match &polled {
            Poll::Ready(None) => {
                me.done = true;
                me.give_back();
            }
            Poll::Ready(Some(Err(_))) => me.link = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: Body + 'static> Drop for Returning<B> {
    fn drop(&mut self) {
        // A body never polled because it was empty (HEAD, 204, Content-Length: 0) is at its end too.
        if self.done || self.body.is_end_stream() {
            self.give_back();
        }
    }
}
