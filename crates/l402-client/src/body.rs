//! Reading a response body without trusting the server: chunk by chunk, up to a size cap, each read bounded by
//! the client's read timeout ([`crate::ClientConfig::read_timeout`]).
//!
//! A body over the cap is [`Error::BodyTooLarge`] (refused at once when `Content-Length` already says so); a
//! server that stops sending is [`Error::ReadTimeout`]. Neither touches the token store: a token paid for the
//! request stays stored and valid.

use reqwest::Response;
use reqwest::header::CONTENT_LENGTH;

use crate::error::Error;

/// The next chunk of `response`'s body (`None` at its end), with a read timeout reported as
/// [`Error::ReadTimeout`].
pub async fn next_chunk(response: &mut Response) -> Result<Option<bytes::Bytes>, Error> {
    response.chunk().await.map_err(Error::from_transport)
}

/// The body's declared length, if the server sent a valid `Content-Length`.
fn declared_length(response: &Response) -> Option<u64> {
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads at most `limit` bytes of the body. Returns them and whether that was the whole body (`false`: there
/// was more, which was not read).
pub async fn read_prefix(response: &mut Response, limit: usize) -> Result<(Vec<u8>, bool), Error> {
    let mut out =
        Vec::with_capacity(declared_length(response).map_or(0, |n| n.min(limit as u64) as usize).min(1 << 20));
    while let Some(chunk) = next_chunk(response).await? {
        let room = limit - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, false));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, true))
}

/// Reads the whole body, refusing one over `limit` bytes ([`Error::BodyTooLarge`]).
pub async fn read_capped(response: &mut Response, limit: usize) -> Result<Vec<u8>, Error> {
    check_declared(response, limit as u64)?;
    match read_prefix(response, limit).await? {
        (body, true) => Ok(body),
        (_, false) => Err(Error::BodyTooLarge { limit: limit as u64 }),
    }
}

/// Refuses a body whose `Content-Length` is already over `limit`, before reading any of it.
pub fn check_declared(response: &Response, limit: u64) -> Result<(), Error> {
    match declared_length(response) {
        Some(n) if n > limit => Err(Error::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}
