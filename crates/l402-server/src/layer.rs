//! The tower [`Layer`]: prices each request, lets paid ones through with the verified [`L402Token`] (or, for a
//! `Payment` charge, the [`PaidCharge`], and a `Payment-Receipt` on the response) as a request extension, and
//! answers the others itself (a 402 challenge is a normal `Ok(response)`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::charge::PaidCharge;
use crate::paywall::{Authorized, L402Token, Paywall, Refusal};
use crate::pricing::{Charge, Pricing, RequestInfo};
use crate::response;
use crate::session::{SessionPaid, SessionRefusal};

/// The response body: the inner service's, or the paywall's own.
pub type L402Body<B> = Either<B, Full<Bytes>>;

/// Puts a paywall in front of a service.
#[derive(Clone)]
pub struct L402Layer {
    paywall: Arc<Paywall>,
    pricing: Arc<dyn Pricing>,
}

impl std::fmt::Debug for L402Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L402Layer").field("paywall", &self.paywall).finish_non_exhaustive()
    }
}

impl L402Layer {
    /// A layer charging requests as `pricing` says.
    pub fn new(paywall: Arc<Paywall>, pricing: impl Pricing) -> Self {
        Self { paywall, pricing: Arc::new(pricing) }
    }
}

impl<S> Layer<S> for L402Layer {
    type Service = L402Service<S>;

    fn layer(&self, inner: S) -> Self::Service {
        L402Service { inner, paywall: self.paywall.clone(), pricing: self.pricing.clone() }
    }
}

/// The service [`L402Layer`] makes.
#[derive(Clone)]
pub struct L402Service<S> {
    inner: S,
    paywall: Arc<Paywall>,
    pricing: Arc<dyn Pricing>,
}

impl<S> std::fmt::Debug for L402Service<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L402Service").finish_non_exhaustive()
    }
}

/// The future of [`L402Service`].
pub type ResponseFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<L402Body<B>>, E>> + Send>>;

/// Answers a refused request: a fresh challenge where a new token would help, else the refusal. Counts it and
/// logs the reason (never the credential).
pub async fn answer(paywall: &Paywall, charge: &Charge, refusal: Refusal, grpc: bool) -> Response<Full<Bytes>> {
    paywall.metrics().refused(&charge.service.name, refusal.reason());
    if refusal.wants_challenge() {
        match paywall.offers(charge).await {
            Ok(offers) => {
                if !matches!(refusal, Refusal::PaymentRequired) {
                    tracing::info!(reason = refusal.reason(), service = %charge.service.name, "credential refused; new challenge");
                }
                let mut resp = response::challenge(&offers, &charge.service.name, grpc);
                if let Refusal::Session(SessionRefusal::Insufficient { balance, .. }) = &refusal {
                    resp.headers_mut().insert(response::X_L402_BALANCE_MSAT, HeaderValue::from(balance.0));
                }
                return resp;
            }
            Err(e) => {
                tracing::warn!(reason = e.reason(), error = %e, "could not mint a challenge");
                paywall.metrics().refused(&charge.service.name, e.reason());
                return response::refusal(&e, grpc);
            }
        }
    }
    tracing::info!(reason = refusal.reason(), service = %charge.service.name, "request refused");
    response::refusal(&refusal, grpc)
}

/// Puts a charge's receipt on the response it paid for, which is private to the client that paid.
pub fn with_receipt(headers: &mut http::HeaderMap, receipt: HeaderValue) {
    headers.insert(response::PAYMENT_RECEIPT, receipt);
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("private"));
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for L402Service<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<L402Body<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let info = RequestInfo { method: req.method(), uri: req.uri(), headers: req.headers() };
        let Some(charge) = self.pricing.charge(&info) else {
            self.paywall.metrics().free_requests.inc();
            let fut = self.inner.call(req);
            return Box::pin(async move { fut.await.map(|r| r.map(Either::Left)) });
        };
        // The ready service is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let paywall = self.paywall.clone();
        Box::pin(async move {
            let grpc = response::is_grpc(req.headers());
            match paywall.authorize(req.headers(), &charge).await {
                Ok(Authorized::Token(token)) => {
                    tracing::debug!(token_id = %token.token_id, service = %token.service, "paid request");
                    req.extensions_mut().insert::<L402Token>(token);
                    inner.call(req).await.map(|r| r.map(Either::Left))
                }
                Ok(Authorized::Charge(paid)) => {
                    let receipt = HeaderValue::from_str(&paid.receipt).ok();
                    req.extensions_mut().insert::<PaidCharge>(paid);
                    let mut resp = inner.call(req).await?;
                    if let Some(receipt) = receipt {
                        with_receipt(resp.headers_mut(), receipt);
                    }
                    Ok(resp.map(Either::Left))
                }
                Ok(Authorized::Session(paid)) => {
                    let receipt = HeaderValue::from_str(&paid.receipt).ok();
                    let balance = HeaderValue::from(paid.balance.0);
                    req.extensions_mut().insert::<SessionPaid>(paid);
                    let mut resp = inner.call(req).await?;
                    resp.headers_mut().insert(response::X_L402_BALANCE_MSAT, balance);
                    if let Some(receipt) = receipt {
                        with_receipt(resp.headers_mut(), receipt);
                    }
                    Ok(resp.map(Either::Left))
                }
                Ok(Authorized::SessionClosed(closed)) => Ok(response::session_closed(&closed, grpc).map(Either::Right)),
                Err(refusal) => Ok(answer(&paywall, &charge, refusal, grpc).await.map(Either::Right)),
            }
        })
    }
}
