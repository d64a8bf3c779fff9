//! The chat upstream's answers, read off the wire: usage computed from the request, SSE chunks ending with the
//! usage chunk and `[DONE]`, the JSON answer, and a cut stream that ends without usage.
#![allow(missing_docs)]

use l402_testkit::{ChatOptions, ChatUpstream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn post(up: &ChatUpstream, body: &str) -> String {
    let addr = up.url().trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

const MESSAGES: &str = r#""messages":[{"role":"user","content":"one two three"},{"role":"user","content":"four"}]"#;

#[tokio::test]
async fn a_stream_sends_a_chunk_per_token_then_the_usage_then_done() {
    let up = ChatUpstream::start(ChatOptions { completion_tokens: 5, ..ChatOptions::default() }).await.expect("up");
    let text = post(&up, &format!(r#"{{"model":"m","stream":true,"max_tokens":3,{MESSAGES}}}"#)).await;
    assert!(text.contains("text/event-stream"), "{text}");
    assert_eq!(text.matches("\"delta\"").count(), 3, "{text}");
    assert!(text.contains(r#""usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}"#), "{text}");
    assert!(text.contains("data: [DONE]\n\n"), "{text}");
    assert_eq!(up.chunks_sent(), 4);
}

#[tokio::test]
async fn without_stream_the_answer_is_json_with_usage() {
    let up = ChatUpstream::start(ChatOptions { completion_tokens: 5, ..ChatOptions::default() }).await.expect("up");
    let text = post(&up, &format!(r#"{{"model":"m",{MESSAGES}}}"#)).await;
    assert!(text.contains(r#""usage":{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9}"#), "{text}");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn a_cut_stream_ends_without_usage_or_done() {
    let options = ChatOptions { completion_tokens: 5, drop_after: Some(2), ..ChatOptions::default() };
    let up = ChatUpstream::start(options).await.expect("up");
    let text = post(&up, &format!(r#"{{"model":"m","stream":true,{MESSAGES}}}"#)).await;
    assert_eq!(text.matches("\"delta\"").count(), 2, "{text}");
    assert!(!text.contains("prompt_tokens") && !text.contains("[DONE]"), "{text}");
}

#[tokio::test]
async fn a_bad_body_is_a_400() {
    let up = ChatUpstream::start(ChatOptions::default()).await.expect("up");
    assert!(post(&up, "{not json").await.starts_with("HTTP/1.1 400"));
}
