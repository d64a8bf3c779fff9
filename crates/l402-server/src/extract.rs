//! The axum extractor for the verified token: `async fn handler(token: L402Token)`.
//!
//! The token is put there by [`crate::L402Layer`]; a handler that asks for it on a route the layer does not
//! charge for is a wiring mistake, answered 500 with a message saying so. `Option<L402Token>` is `None` there.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::paywall::L402Token;

/// The route has no verified token: the L402 layer is not in front of it, or does not charge for it.
#[derive(Debug, Clone, Copy)]
pub struct MissingL402Token;

impl IntoResponse for MissingL402Token {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, "no L402 token: the L402 layer does not guard this route").into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for L402Token {
    type Rejection = MissingL402Token;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<L402Token>().cloned().ok_or(MissingL402Token)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for L402Token {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<L402Token>().cloned())
    }
}
