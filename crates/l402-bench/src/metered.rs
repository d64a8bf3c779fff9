//! `l402-bench metered`: time to first byte of a streamed chat completion through a metered service, beside
//! the same upstream direct and through a plain (`payment = false`) service of the same proxy.
//!
//! The upstream is the test suite's OpenAI-compatible chat endpoint (`l402_testkit::ChatUpstream`): it streams
//! one SSE chunk per completion token, the first at once, the others after `--chunk-delay-ms`, then a usage
//! chunk. The metered service's token is bought with a real payment (alice -> LND simulator -> the server's LDK
//! node); each of its requests reserves an estimate from the token's balance in the store before it is
//! forwarded, and is debited from the usage when the stream ends. The three targets are asked in turn, one
//! request each per round, over kept-alive connections, so that drift of the machine falls on all three
//! alike; a request's time to first byte is from sending it to its first body chunk. The metering must not
//! buffer: the target is a median within 1 ms of direct.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use l402_testkit::chat::{ChatOptions, ChatUpstream};
use serde_json::json;

use crate::net::{self, Net};
use crate::output::{emit, note, round};
use crate::proxyproc::{self, ProxyProcess};

/// Options of `l402-bench metered`.
#[derive(Args, Debug)]
pub(crate) struct MeteredArgs {
    /// The `l402` binary (default: `L402_BIN`, then `l402` beside this binary).
    #[arg(long)]
    l402_bin: Option<PathBuf>,
    /// Requests to each target.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Completion tokens (SSE chunks) per answer.
    #[arg(long, default_value_t = 8)]
    chunks: u64,
    /// Pause of the upstream before each chunk after the first, milliseconds.
    #[arg(long, default_value_t = 2)]
    chunk_delay_ms: u64,
}

pub(crate) async fn run(args: MeteredArgs) -> Result<()> {
    let bin = proxyproc::locate_l402(args.l402_bin.clone())?;
    let net = Net::start(true).await?;
    let result = measure(&args, &bin, &net).await;
    net.shutdown().await;
    result
}

/// One streamed request: time to the first body chunk and to the end, and the metering headers.
async fn stream(
    http: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    auth: Option<&str>,
) -> Result<(Duration, Duration, bool)> {
    let body = json!({"model": "bench", "stream": true, "max_tokens": 64,
        "messages": [{"role": "user", "content": "how far is the moon"}]});
    let mut req = http.post(url).json(&body);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let started = Instant::now();
    let mut resp = req.send().await.with_context(|| format!("POST {url}"))?;
    anyhow::ensure!(resp.status() == 200, "POST {url}: {}", resp.status());
    let metered = resp.headers().contains_key("x-l402-reserved-msat");
    let first = resp.chunk().await?.context("an empty answer")?;
    let ttfb = started.elapsed();
    anyhow::ensure!(first.starts_with(b"data: "), "not an SSE stream: {first:?}");
    let mut last = first;
    while let Some(c) = resp.chunk().await? {
        last = c;
    }
    anyhow::ensure!(last.ends_with(b"data: [DONE]\n\n"), "the stream did not end with [DONE]");
    Ok((ttfb, started.elapsed(), metered))
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn measure(args: &MeteredArgs, bin: &Path, net: &Net) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("l402-bench-metered-").tempdir()?;
    let (_sim, lnd) = net::lnd_simulator(&net.server, dir.path()).await?;
    let chat = ChatUpstream::start(ChatOptions {
        completion_tokens: args.chunks,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        drop_after: None,
    })
    .await?;
    let up = chat.url();
    let port = proxyproc::free_port()?;
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nstore = {{ kind = \"sqlite\", path = \"{db}\" }}\n{lightning}\n\
         [[service]]\nname = \"plain\"\nhost = \"plain.local\"\npath = \"/v1/*\"\nupstream = \"{up}\"\npayment = false\n\n\
         [[service]]\nname = \"chat\"\npath = \"/v1/*\"\nupstream = \"{up}\"\n\
         [service.metering]\nbundle = 1000000\ninput_msat_per_unit = 1\noutput_msat_per_unit = 1\n",
        db = dir.path().join("l402.db").display(),
        lightning = proxyproc::lnd_section(&lnd),
    );
    let proxy = ProxyProcess::start(bin, &dir.path().join("l402.toml"), &config, port, "warn").await?;
    let base = format!("http://{}", proxy.addr());
    let http = reqwest::Client::new();
    let (token, _) = net::buy_token(&http, &format!("{base}/v1/chat/completions"), net.alice()?.as_ref()).await?;
    note(&format!("a bundle of 1,000,000 units bought; {} requests to each target", args.requests));

    let direct_url = format!("{up}/v1/chat/completions");
    let proxy_url = format!("{base}/v1/chat/completions");
    let mut ttfb: [Vec<Duration>; 3] = Default::default();
    let mut total: [Vec<Duration>; 3] = Default::default();
    for i in 0..args.requests + 10 {
        let rounds = [
            stream(&http, &direct_url, None, None).await?,
            stream(&http, &proxy_url, Some("plain.local"), None).await?,
            stream(&http, &proxy_url, None, Some(&token)).await?,
        ];
        anyhow::ensure!(!rounds[1].2 && rounds[2].2, "only the metered service reserves");
        if i < 10 {
            continue; // warm-up: connections made, caches filled
        }
        for (k, (t, all, _)) in rounds.into_iter().enumerate() {
            ttfb[k].push(t);
            total[k].push(all);
        }
    }
    for v in ttfb.iter_mut().chain(total.iter_mut()) {
        v.sort_unstable();
    }
    let names = ["direct", "plain", "metered"];
    let med = |v: &[Duration]| quantile(v, 0.5);
    let figures: Vec<_> = (0..3)
        .map(|k| {
            json!({"target": names[k], "ttfb_p50_ms": round(med(&ttfb[k]), 3), "ttfb_p90_ms": round(quantile(&ttfb[k], 0.9), 3),
                "total_p50_ms": round(med(&total[k]), 3)})
        })
        .collect();
    let over_direct = med(&ttfb[2]) - med(&ttfb[0]);
    let over_plain = med(&ttfb[2]) - med(&ttfb[1]);
    emit(
        "metered.ttfb",
        json!({"requests": args.requests, "chunks": args.chunks, "chunk_delay_ms": args.chunk_delay_ms,
            "targets": figures, "over_direct_ms": round(over_direct, 3), "over_plain_ms": round(over_plain, 3),
            "target_ms": 1.0}),
        &format!(
            "time to first byte of a streamed completion, medians of {} each: direct {:.3} ms, plain proxy {:.3} ms, \
             metered {:.3} ms: metering adds {over_plain:.3} ms to the plain proxy, {over_direct:.3} ms over direct \
             (target within 1 ms); whole answer: {:.1} / {:.1} / {:.1} ms",
            args.requests,
            med(&ttfb[0]),
            med(&ttfb[1]),
            med(&ttfb[2]),
            med(&total[0]),
            med(&total[1]),
            med(&total[2]),
        ),
    );
    drop(proxy);
    Ok(())
}
