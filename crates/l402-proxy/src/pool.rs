//! Connections to a plain `http://` upstream: HTTP/1.1 over TCP, kept alive and pooled per thread.
//!
//! Each worker thread has pools of its own ([`crate::forward`]), so a request, its upstream connection and
//! that connection's task all run on one thread, and a pool is only ever locked by its own thread (an
//! uncontended lock, there because response bodies must be `Send`). A connection goes back to its pool when
//! the response body has been read to its end (or was empty); one whose body was dropped half read is closed.
//! Before reuse a connection must be ready (the previous exchange finished, the upstream has not closed it);
//! a request that could not be sent on a reused connection (the upstream closed it meanwhile) is sent again on
//! another, as it never left.

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

/// One upstream's idle connections on one thread.
pub(crate) struct Pool<B> {
    /// `host:port`, connected to.
    authority: String,
    idle: Arc<Mutex<Vec<http1::SendRequest<B>>>>,
}

impl<B> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("authority", &self.authority).finish_non_exhaustive()
    }
}

impl<B> Clone for Pool<B> {
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
        Self { authority, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    fn take_idle(&self) -> Option<http1::SendRequest<B>> {
        self.idle.lock().ok()?.pop()
    }

    async fn connect(&self) -> Result<http1::SendRequest<B>, PoolError> {
        let stream = tokio::net::TcpStream::connect(self.authority.as_str()).await.map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(PoolError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response, whose body gives the connection
    /// back when it ends.
    pub(crate) async fn send(&self, mut req: Request<B>) -> Result<Response<Returning<B>>, PoolError> {
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue; // closed by the upstream while idle
                }
                return Err(PoolError::Connect(std::io::Error::other("the new connection closed at once")));
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let idle = self.idle.clone();
                    return Ok(resp.map(|body| Returning { body, sender: Some(sender), idle, done: false }));
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

/// An upstream response body that puts its connection back in the pool once read to the end.
pub(crate) struct Returning<B> {
    body: Incoming,
    sender: Option<http1::SendRequest<B>>,
    idle: Arc<Mutex<Vec<http1::SendRequest<B>>>>,
    done: bool,
}

impl<B> Returning<B> {
    fn give_back(&mut self) {
        if let Some(sender) = self.sender.take() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < MAX_IDLE && !sender.is_closed() {
                    idle.push(sender);
                }
            }
        }
    }
}

impl<B: Unpin> Body for Returning<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                me.done = true;
                me.give_back();
            }
            Poll::Ready(Some(Err(_))) => me.sender = None,
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

impl<B> Drop for Returning<B> {
    fn drop(&mut self) {
        // A body never polled because it was empty (HEAD, 204, Content-Length: 0) is at its end too.
        if self.done || self.body.is_end_stream() {
            self.give_back();
        }
    }
}
