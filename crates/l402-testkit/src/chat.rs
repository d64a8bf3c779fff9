//! [`ChatUpstream`]: an OpenAI-compatible chat endpoint on loopback (HTTP/1.1), for testing metered
//! services: `POST /v1/chat/completions` answers with a JSON completion, or with `"stream": true` an SSE
//! stream of one chunk per completion token, a last chunk carrying `usage` (as OpenAI does with
//! `stream_options.include_usage`), then `data: [DONE]`.
//!
//! Usage is a function of the request, so that a test can compute what a request must cost:
//! `prompt_tokens` is the number of whitespace-separated words in the messages' `content` strings,
//! `completion_tokens` is `min(max_completion_tokens or max_tokens, ChatOptions::completion_tokens)`.
//! Chunks are paced by a delay; a request with `"x_gate": true` is also held by the upstream's gate (each chunk
//! after the first waits for a permit, [`ChatUpstream::release`]); a stream is cut (the connection drops, no
//! usage is sent) after [`ChatOptions::drop_after`] chunks, or the request's `"x_drop_after"`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// How the upstream answers.
#[derive(Clone, Debug)]
pub struct ChatOptions {
    /// The most completion tokens an answer has (fewer if the request's `max_tokens` says so).
    pub completion_tokens: u64,
    /// The pause before each streamed chunk after the first.
    pub chunk_delay: Duration,
    /// If set, a stream is cut (the connection dropped, no usage, no `[DONE]`) after this many chunks (at least 1).
    pub drop_after: Option<usize>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self { completion_tokens: 8, chunk_delay: Duration::from_millis(5), drop_after: None }
    }
}

/// A running chat upstream. Dropping it stops the listener.
#[derive(Debug)]
pub struct ChatUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    chunks_sent: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Drop for ChatUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The usage the upstream reports for a request body (see the module doc).
pub fn expected_usage(request: &Value, options: &ChatOptions) -> (u64, u64) {
    let prompt = request["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["content"].as_str()).map(|c| c.split_whitespace().count() as u64).sum())
        .unwrap_or(0);
    let max = request["max_completion_tokens"].as_u64().or_else(|| request["max_tokens"].as_u64());
    (prompt, max.map_or(options.completion_tokens, |m| m.min(options.completion_tokens)))
}

type Body = BoxBody<Bytes, std::io::Error>;

impl ChatUpstream {
    /// Starts on 127.0.0.1 (a free port).
    pub async fn start(options: ChatOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let chunks_sent = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (r, c, g) = (requests.clone(), chunks_sent.clone(), gate.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (options, r, c, g) = (options.clone(), r.clone(), c.clone(), g.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (options, r, c, g) = (options.clone(), r.clone(), c.clone(), g.clone());
                        async move { Ok::<_, Infallible>(answer(req, options, r, c, g).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(Self { addr, requests, chunks_sent, gate, task })
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets `n` more held chunks of `"x_gate": true` requests go.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Chat requests received (well-formed or not).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Streamed chunks handed to the connection so far, over all requests (usage chunk included, `[DONE]` not).
    pub fn chunks_sent(&self) -> usize {
        self.chunks_sent.load(Ordering::SeqCst)
    }
}

fn full(status: u16, content_type: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e: Infallible| match e {}).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn answer(
    req: Request<Incoming>,
    options: ChatOptions,
    requests: Arc<AtomicUsize>,
    chunks_sent: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
) -> Response<Body> {
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/chat/completions" {
        return full(404, "application/json", r#"{"error":{"message":"not found"}}"#.into());
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return full(400, "application/json", r#"{"error":{"message":"body"}}"#.into());
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return full(400, "application/json", r#"{"error":{"message":"not JSON"}}"#.into());
    };
    let (prompt, completion) = expected_usage(&request, &options);
    let mut options = options;
    if let Some(n) = request["x_drop_after"].as_u64() {
        options.drop_after = usize::try_from(n).ok();
    }
    let gate = (request["x_gate"] == Value::Bool(true)).then_some(gate);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let model = request["model"].as_str().unwrap_or("test-model").to_owned();
    if request["stream"] != Value::Bool(true) {
        let text = vec!["tok"; usize::try_from(completion).unwrap_or(0)].join(" ");
        let out = json!({
            "id": "chatcmpl-test", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return full(200, "application/json", out.to_string());
    }
    // One chunk per completion token (`usage: null`, as OpenAI with include_usage), the usage chunk, [DONE].
    let mut events: Vec<String> = (0..completion)
        .map(|i| {
            json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model,
                   "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}, "finish_reason": null}],
                   "usage": null})
            .to_string()
        })
        .collect();
    events.push(
        json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage})
            .to_string(),
    );
    let state = (events.into_iter().enumerate(), (options, gate), chunks_sent, false);
    let stream = futures_util::stream::unfold(state, |(mut events, (options, gate), sent, done)| async move {
        if done {
            return None;
        }
        let Some((i, event)) = events.next() else {
            let last = Frame::data(Bytes::from_static(b"data: [DONE]\n\n"));
            return Some((Ok(last), (events, (options, gate), sent, true)));
        };
        if i > 0 {
            // The pause also lets the connection flush what was sent before a cut.
            tokio::time::sleep(options.chunk_delay).await;
            if options.drop_after.is_some_and(|n| i >= n) {
                let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "stream cut by the test upstream");
                return Some((Err(cut), (events, (options, gate), sent, true)));
            }
            if let Some(gate) = &gate {
                if let Ok(p) = gate.acquire().await {
                    p.forget();
                }
            }
        }
        sent.fetch_add(1, Ordering::SeqCst);
        Some((Ok(Frame::data(Bytes::from(format!("data: {event}\n\n")))), (events, (options, gate), sent, false)))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-cache"));
    r
}
