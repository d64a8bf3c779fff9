//! The sections of BENCHMARKS.md for `l402-bench proxy` (beside nginx) and `l402-bench addresses`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::report::thousands;
use crate::report_sections::{Results, mib, missing, num, range, within};

fn text<'a>(r: &'a Results, figure: &str, field: &str) -> Option<&'a str> {
    r.get(figure)?.get(field)?.as_str()
}

/// "x0.61 to x0.70 over rounds", from a figure's per-round ratios in `field`.
fn ratio_range(r: &Results, figure: &str, field: &str) -> String {
    let per: Vec<f64> = r
        .get(figure)
        .and_then(|v| v.get(field))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if per.is_empty() {
        return "no rounds".to_owned();
    }
    let lo = per.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("x{lo:.2} to x{hi:.2} over rounds")
}

/// The proxy under wrk, beside nginx.
pub(crate) fn proxy(md: &mut String, r: &Results) {
    let wrk = text(r, "proxy.valid_token", "wrk").unwrap_or("?");
    let rounds = r.get("proxy.valid_token").and_then(|v| v.get("runs")).and_then(Value::as_array).map_or(0, Vec::len);
    let warmup = num(r, "proxy.valid_token", "warmup_s").unwrap_or(0.0);
    let tokens = num(r, "proxy.rotation_cost", "tokens").unwrap_or(0.0);
    let mut cache = num(r, "proxy.rotation_cost", "cache")
        .map_or_else(|| "the default key cache".to_owned(), |c| format!("`key_cache_size = {c:.0}`"));
    if let Some(v) = num(r, "proxy.rotation_cost", "verified_tokens") {
        cache.push_str(&format!(" and `[tokens] verified_tokens = {v:.0}`"));
    }
    let nginx = text(r, "proxy.nginx_setup", "version").unwrap_or("nginx");
    let stateless = text(r, "proxy.minting", "keys") == Some("stateless");
    let workers = num(r, "proxy.nginx_setup", "workers").unwrap_or(0.0);
    let proxy_workers = match num(r, "proxy.nginx_setup", "proxy_workers") {
        Some(n) if n > 0.0 => format!("{n:.0} worker threads (`[listener] workers`)"),
        _ => "a worker thread per core (its default)".to_owned(),
    };
    let _ = writeln!(
        md,
        "Each target got the same load, `wrk {wrk}` over loopback, after an unmeasured {warmup:.0} s warm-up, in \
         {rounds} rounds: upstream, nginx, payment off and token, one after the other in each round (odd rounds in \
         that order, even rounds reversed); then the same for the rotation runs, on two more proxy processes over the \
         same store, one with {cache} and one with the cache off. Each figure is the median over rounds; each ratio or \
         cost the median of per-round ratios, with the range over rounds. nginx: Debian's {nginx}, started by the \
         bench from a generated configuration (`proxy_pass` to the same upstream, {workers:.0} workers = the cores, \
         upstream `keepalive 64`, HTTP/1.1 upstream, the `X-Forwarded-*` headers `l402 proxy` also sets, no access \
         log, keep-alive request limits raised so that connections last the run). The proxy runs {proxy_workers} \
         and logs at `warn` (its default `info` writes a line per request). CPU per request: the user + system time \
         of the proxy process (of nginx's master and workers for nginx) over the run divided by its requests. \
         Other processes: the share of the machine's CPU time used during the run by processes other than this \
         benchmark, its wrk, the proxy and nginx (builds and tests of other work on a shared machine). Upstream: an \
         axum `hello` handler in the bench process. A run with any error or non-2xx answer aborts the benchmark.\n"
    );
    let _ = writeln!(md, "| Figure | req/s | p50 | p99 | CPU per request | other processes | Interpretation |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let nginx_rps = num(r, "proxy.nginx", "rps");
    let off = num(r, "proxy.payment_off", "rps");
    let one = num(r, "proxy.rotate_1_token", "rps");
    let many = format!("proxy, {} tokens in rotation, {cache}", thousands(tokens));
    let many_off = match text(r, "proxy.rotation_cost_no_cache", "off") {
        Some(o) => format!("proxy, {} tokens in rotation, every cache off (`{o}`)", thousands(tokens)),
        None => format!("proxy, {} tokens in rotation, `key_cache_ttl_ms = 0`", thousands(tokens)),
    };
    let control = format!("proxy, the rotation over the 1 paid token repeated {} times", thousands(tokens));
    let rows = [
        ("proxy.upstream_direct", "upstream hit directly", None, "the ceiling: no proxy hop"),
        ("proxy.nginx", "nginx `proxy_pass`, upstream keepalive", None, "the yardstick of issue 10"),
        ("proxy.payment_off", "proxy, payment off (`payment = false`)", nginx_rps, "of nginx's req/s"),
        ("proxy.valid_token", "proxy, one valid token (paid over Lightning)", off, "of the payment-off proxy's req/s"),
        (
            "proxy.rotate_1_token",
            control.as_str(),
            None,
            "the control for the rotation runs: the same Lua request() path in wrk, which costs wrk CPU",
        ),
        ("proxy.rotate_many_tokens", many.as_str(), one, "of the 1-token control"),
        ("proxy.rotate_many_no_cache", many_off.as_str(), one, "of the 1-token control"),
    ];
    for (figure, what, base, note) in rows {
        let (Some(rps), Some(p50), Some(p99)) =
            (num(r, figure, "rps"), num(r, figure, "p50_us"), num(r, figure, "p99_us"))
        else {
            missing(md, figure);
            continue;
        };
        let note = match base {
            Some(b) => {
                format!("{:.1}% {note} (ratio of the medians; the paired per-round figures are below)", rps / b * 100.0)
            }
            None => note.to_owned(),
        };
        let cpu = num(r, figure, "proxy_cpu_us").map_or_else(|| "-".to_owned(), |c| format!("{c:.1} µs"));
        let foreign =
            num(r, figure, "foreign_cpu").map_or_else(|| "-".to_owned(), |c| format!("{:.0}% of the CPU", c * 100.0));
        let _ = writeln!(
            md,
            "| {what} | {} | {:.2} ms | {:.2} ms | {cpu} | {foreign} | {note} |",
            thousands(rps),
            p50 / 1e3,
            p99 / 1e3
        );
    }
    let _ = writeln!(md, "\n| Figure | Value | Against the target |");
    let _ = writeln!(md, "|---|---|---|");
    match (num(r, "proxy.vs_nginx", "off"), num(r, "proxy.vs_nginx", "token")) {
        (Some(off), Some(token)) => {
            let verdict = if off >= 1.0 { "meets" } else { "does NOT meet" };
            let _ = writeln!(
                md,
                "| payment off against nginx: (payment-off req/s) / (nginx req/s), median of per-round ratios | \
                 x{off:.2} ({}) | {verdict} issue 10's target: at least nginx's req/s |",
                ratio_range(r, "proxy.vs_nginx", "off_rounds")
            );
            let _ = writeln!(
                md,
                "| valid token against nginx: (token req/s) / (nginx req/s) | x{token:.2} ({}) | no separate target: \
                 the paywall on top of the payment-off hop |",
                ratio_range(r, "proxy.vs_nginx", "token_rounds")
            );
        }
        _ => missing(md, "proxy.vs_nginx"),
    }
    match num(r, "proxy.paywall_cost", "value") {
        Some(c) => {
            let _ = writeln!(
                md,
                "| paywall cost = 1 - (token req/s) / (payment-off req/s), median of per-round ratios | {:.1}% ({}) | \
                 {} issue 10's target of < 5% |",
                c * 100.0,
                range(r, "proxy.paywall_cost"),
                within(c, 0.05)
            );
        }
        None => missing(md, "proxy.paywall_cost"),
    }
    if let (Some(off), Some(token), Some(extra), Some(share)) = (
        num(r, "proxy.paywall_cpu", "off_us"),
        num(r, "proxy.paywall_cpu", "token_us"),
        num(r, "proxy.paywall_cpu", "extra_us"),
        num(r, "proxy.paywall_cpu", "share"),
    ) {
        let _ = writeln!(
            md,
            "| paywall CPU in the proxy process: CPU time per request with a token over payment off (user + system \
             from /proc/PID/stat; medians of per-round differences and ratios) | +{extra:.1} µs, +{:.1}% ({}; medians \
             {off:.1} µs off, {token:.1} µs token) | the same target measured on the proxy's own CPU time, apart from \
             wrk and the upstream sharing the cores: {} 5% |",
            share * 100.0,
            range(r, "proxy.paywall_cpu"),
            within(share, 0.05)
        );
    }
    if let Some(c) = num(r, "proxy.proxy_cost", "value") {
        let _ = writeln!(
            md,
            "| proxy hop cost = 1 - (payment-off req/s) / (upstream req/s) | {:.1}% | no target; on 2 cores the proxy \
             process competes with wrk and the upstream for CPU (compare nginx's hop in the table above) |",
            c * 100.0
        );
    }
    if let Some(c) = num(r, "proxy.rotation_cost", "value") {
        let _ = writeln!(
            md,
            "| {} distinct tokens vs 1, {cache}: 1 - many/one | {:.1}% ({}) | {} issue 10's target of < 5% |",
            thousands(tokens),
            c * 100.0,
            range(r, "proxy.rotation_cost"),
            within(c, 0.05)
        );
    }
    if let Some(c) = num(r, "proxy.rotation_cost_no_cache", "value") {
        let off = text(r, "proxy.rotation_cost_no_cache", "off");
        let _ = writeln!(
            md,
            "| {} distinct tokens vs 1, {} | {:.1}% ({}) | {} |",
            thousands(tokens),
            off.map_or_else(|| "`key_cache_ttl_ms = 0`".to_owned(), |o| format!("every cache off (`{o}`)")),
            c * 100.0,
            range(r, "proxy.rotation_cost_no_cache"),
            match (stateless, off.is_some()) {
                (true, true) =>
                    "every request derives its root key and checks the HMAC chain: what a token costs uncached",
                (true, false) => {
                    "only the stored tokens' caches off: stateless tokens are still verified from their own cache \
                     (`[tokens] verified_tokens`), so this is the same load as the line above"
                }
                (false, _) => "every request reads the store: the upper bound of the store's cost",
            }
        );
    }
    let (rest, peak, after) = (
        num(r, "proxy.memory", "rest_kib"),
        num(r, "proxy.memory", "peak_load_kib"),
        num(r, "proxy.memory", "after_load_kib"),
    );
    match (rest, peak, after) {
        (Some(rest), Some(peak), Some(after)) => {
            let nginx_mem = num(r, "proxy.memory", "nginx_kib").map(mib).unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(
                md,
                "| proxy memory (VmRSS from /proc/PID/status): at rest / peak under load / 2 s after | {} / {} / {} | \
                 no number set; sampled every 20 ms during the runs above (nginx's master and workers together at \
                 the end: {nginx_mem}) |",
                mib(rest),
                mib(peak),
                mib(after)
            );
        }
        _ => missing(md, "proxy.memory"),
    }
    if let (Some(rest), Some(peak)) =
        (num(r, "proxy.memory_rotation", "rest_kib"), num(r, "proxy.memory_rotation", "peak_load_kib"))
    {
        let _ = writeln!(
            md,
            "| rotation proxy memory: at rest / peak under the {}-token load | {} / {} | with {cache} |",
            thousands(tokens),
            mib(rest),
            mib(peak)
        );
    }
    if let (Some(n), Some(s)) = (num(r, "proxy.minting", "tokens"), num(r, "proxy.minting", "seconds")) {
        let what = if stateless {
            "minting the rotated stateless tokens under the proxies' master key (nothing stored)"
        } else {
            "minting the rotated tokens and recording them in the store as paid"
        };
        let _ = writeln!(
            md,
            "| {what} | {} tokens in {s:.1} s ({} a second) | setup, not a proxy figure |",
            thousands(n),
            thousands(n / s.max(1e-9))
        );
    }
    if let Some(secs) = num(r, "proxy.rotation_first_pass", "seconds") {
        let _ = writeln!(
            md,
            "| every rotated token used on each rotation proxy before the rounds (its first use is when the proxy \
             records it; the default-cache proxy again until the store had every token, its record queue being \
             bounded) | {secs:.0} s ({} requests in {} pass(es), {} tokens recorded; + {} requests) | setup: the \
             rounds measure tokens already recorded |",
            thousands(num(r, "proxy.rotation_first_pass", "requests_b").unwrap_or(0.0)),
            num(r, "proxy.rotation_first_pass", "passes_b").unwrap_or(1.0),
            thousands(num(r, "proxy.rotation_first_pass", "recorded").unwrap_or(0.0)),
            thousands(num(r, "proxy.rotation_first_pass", "requests_c").unwrap_or(0.0))
        );
    }
    if let Some(ms) = num(r, "proxy.real_payment", "ms") {
        let _ = writeln!(
            md,
            "| the payment that bought the token (alice's LDK node -> channel -> server's LDK node behind LND-sim) | \
             {ms:.1} ms | one real payment, not a median |"
        );
    }
    let minted = if stateless {
        "stateless, as the proxy mints by default: the token id minted and the root key derived from the master key \
         the proxies load (`MasterKeys::mint_token_id`, `MasterKeys::root_key`), the same caveats, nothing written \
         to the store (each proxy records a token on its first use, which the first pass above did)"
    } else {
        "the old way (`--stored-tokens`): random token id and root key, the same caveats, recorded in the proxy's \
         store as paid (the rows `TokenStore::insert` and `mark_paid` leave, written in one transaction, one read \
         back through `TokenStore::lookup`)"
    };
    let _ = writeln!(
        md,
        "\nThe {} rotated tokens were minted before the proxies started, with `l402-proto` and `l402-server`, \
         {minted}; each is over the payment hash of a preimage chosen by the benchmark: they are valid because the \
         preimage matches, but they were not paid over Lightning. Only the single token was. wrk goes through them \
         in turn (one file per wrk thread, each run carrying on where the previous one stopped), so a token comes \
         back only after all the others.",
        thousands(tokens)
    );
}

/// The proxy's memory under a million client addresses.
pub(crate) fn addresses(md: &mut String, r: &Results) {
    let concurrency = ["open", "challenge", "freebies"]
        .iter()
        .find_map(|s| num(r, &format!("addresses.{s}"), "concurrency"))
        .unwrap_or(0.0);
    let _ = writeln!(
        md,
        "A load generator in the bench process sends one request per client address, each on its own connection \
         bound to its own source address in 127.0.0.0/8 (127.1.0.1, 127.1.0.2, ...; Linux routes the block to \
         loopback), {concurrency:.0} connections at a time, each closed with a reset once the answer is read; each \
         scenario on a fresh `l402 proxy` process (`RUST_LOG=warn`, SQLite store, LND-sim over the server's LDK \
         node). The proxy's VmRSS is read before, at each tenth of the addresses, at its peak (sampled every 20 ms) \
         and 5 s after. Bounded: the second half of the addresses grew it by at most a quarter of what the first \
         half did (or 2 MiB); state kept per address makes both halves grow alike.\n"
    );
    let _ = writeln!(
        md,
        "| Scenario | Addresses | Time | Answers | VmRSS before / half-way / end / peak / 5 s after | At the peak, per \
         address | Bounded |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (key, what) in [
        ("open", "`payment = false` service (the control: connections, no per-address state)"),
        ("challenge", "paid service, no credential (402 challenges; 429 once a challenge rate limit applies)"),
        ("freebies", "paid service with freebies (one free request per address)"),
    ] {
        let figure = format!("addresses.{key}");
        let Some(v) = r.get(&figure) else {
            continue;
        };
        let get = |f: &str| v.get(f).and_then(Value::as_f64).unwrap_or(0.0);
        let mut answers: Vec<String> = Vec::new();
        for (field, suffix) in [("statuses", ""), ("errors", " errors")] {
            if let Some(map) = v.get(field).and_then(Value::as_object) {
                answers
                    .extend(map.iter().map(|(k, n)| format!("{k}{suffix}: {}", thousands(n.as_f64().unwrap_or(0.0)))));
            }
        }
        let (reached, total) = (get("reached"), get("addresses"));
        let stopped = if reached < total {
            format!(" (stopped after {:.0} s: {} of {})", get("max_seconds"), thousands(reached), thousands(total))
        } else {
            String::new()
        };
        let bounded = v.get("bounded").and_then(Value::as_bool).unwrap_or(false);
        let _ = writeln!(
            md,
            "| {what} | {}{stopped} | {:.0} s ({}/s) | {} | {} / {} / {} / {} / {} | {:.0} bytes | {} |",
            thousands(reached),
            get("seconds"),
            thousands(get("per_second")),
            answers.join(", "),
            mib(get("rss_before_kib")),
            mib(get("rss_half_kib")),
            mib(get("rss_end_kib")),
            mib(get("rss_peak_kib")),
            mib(get("rss_after_kib")),
            get("bytes_per_address"),
            if bounded {
                "yes".to_owned()
            } else {
                format!("NO: +{} then +{}", mib(get("first_half_growth_kib")), mib(get("second_half_growth_kib")))
            }
        );
    }
}
