//! Redirects, followed by the client itself (its HTTP client follows none), so that each hop is a request of
//! its own: sent with the token of its own origin (if one is stored), checked against the address policy, and
//! paid, if it asks, under its own origin. A token bought at the end of a redirect is therefore stored for the
//! origin that sold it and sent to no other: the page that redirected never sees it.
//!
//! Followed: `301`, `302`, `303`, `307` and `308` with a `Location` naming an http or https URL, up to
//! [`crate::ClientConfig::max_redirects`]. `303` becomes `GET` (`HEAD` stays `HEAD`), and so does a `POST`
//! answered `301` or `302` (what browsers do); the body and its headers are then dropped. `307` and `308` send
//! the method and body again. A hop to another origin (scheme, host or port) drops `Authorization`, `Cookie`
//! and `Proxy-Authorization`: the caller's credentials were for the first origin.

use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, LOCATION, PROXY_AUTHORIZATION,
    TRANSFER_ENCODING,
};
use reqwest::{Method, Request, Response, StatusCode, Url};

use crate::client::origin_of;
use crate::error::Error;

/// Where `response` redirects to, if it is a redirect the client follows.
pub(crate) fn target(response: &Response) -> Result<Option<Url>, Error> {
    let status = response.status().as_u16();
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = response.headers().get(LOCATION) else { return Ok(None) };
    let location =
        location.to_str().map_err(|_| Error::Redirect(format!("{status} with a Location that is not text")))?;
    let to = response
        .url()
        .join(location.trim())
        .map_err(|e| Error::Redirect(format!("{status} with an invalid Location ({e})")))?;
    if !matches!(to.scheme(), "http" | "https") {
        return Err(Error::Redirect(format!("{status} to a {} URL, not followed", to.scheme())));
    }
    Ok(Some(to))
}

/// The request that follows a `status` redirect of `sent` (the request as the caller made it, without the
/// client's token) to `to`.
pub(crate) fn follow(sent: Option<Request>, from: &Url, status: StatusCode, to: Url) -> Result<Request, Error> {
    let mut next = sent.ok_or_else(|| {
        Error::Redirect(format!("{status} cannot be followed: the request body is a stream and cannot be sent again"))
    })?;
    let method = next.method().clone();
    let to_get = (status == StatusCode::SEE_OTHER && method != Method::HEAD)
        || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && method == Method::POST);
    if to_get {
        *next.method_mut() = Method::GET;
        *next.body_mut() = None;
        for h in [CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING, TRANSFER_ENCODING] {
            next.headers_mut().remove(h);
        }
    }
    if origin_of(from)? != origin_of(&to)? {
        for h in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, HOST] {
            next.headers_mut().remove(h);
        }
    }
    *next.url_mut() = to;
    Ok(next)
}
