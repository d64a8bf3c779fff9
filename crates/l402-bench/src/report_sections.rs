//! The sections of BENCHMARKS.md built from `l402-bench` result lines: a table per command, each figure with
//! its number and a one-line reading against the target.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

pub(crate) type Results = BTreeMap<String, Value>;

pub(crate) fn num(results: &Results, figure: &str, field: &str) -> Option<f64> {
    results.get(figure)?.get(field)?.as_f64()
}

pub(crate) fn missing(md: &mut String, figure: &str) {
    let _ = writeln!(md, "| {figure} | missing: the command printed no result for it | | |");
}

pub(crate) fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// "from a% to b% over rounds", from a cost figure's per-round values.
pub(crate) fn range(r: &Results, figure: &str) -> String {
    let per: Vec<f64> = r
        .get(figure)
        .and_then(|v| v.get("rounds"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let lo = per.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if per.is_empty() {
        "no rounds".to_owned()
    } else {
        format!("{:.1}% to {:.1}% over rounds", lo * 100.0, hi * 100.0)
    }
}

/// What else the machine did during a figure's measurement.
fn machine(r: &Results, figure: &str) -> String {
    match (num(r, figure, "foreign_cpu"), num(r, figure, "iowait")) {
        (Some(f), Some(io)) => format!("{:.0}% / {:.0}%", f * 100.0, io * 100.0),
        (Some(f), None) => format!("{:.0}%", f * 100.0),
        _ => "-".to_owned(),
    }
}

pub(crate) fn within(value: f64, target: f64) -> &'static str {
    if value < target { "within" } else { "NOT within" }
}

/// Challenges per second.
pub(crate) fn challenges(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "Through `Paywall::mint` in process (invoice from the backend, random token id and root key, caveats, SQLite \
         insert) plus the two `WWW-Authenticate` lines, as a 402 needs. LND-sim: `l402_lnd::LndNode` with an invoice \
         macaroon over gRPC/TLS to the simulator, which asks the same LDK node. Other processes' CPU: the share of the \
         machine's CPU time used during the measurement by processes other than this benchmark and those it started; \
         iowait: the share spent waiting on the disk (the node persists each invoice).\n"
    );
    let _ = writeln!(md, "| Figure | Per second | Median | p99 | other processes' CPU / iowait | Interpretation |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (key, label) in [("ldk", "embedded LDK"), ("lnd_sim", "LND-sim")] {
        let invoice = num(r, &format!("challenges.{key}.invoice_only"), "median_us");
        for (kind, what) in [
            ("invoice_only", "create_invoice alone, sequential"),
            ("sequential", "challenges, sequential"),
            ("concurrent", "challenges, concurrent"),
        ] {
            let figure = format!("challenges.{key}.{kind}");
            let (Some(per_sec), Some(med), Some(p99)) =
                (num(r, &figure, "per_sec"), num(r, &figure, "median_us"), num(r, &figure, "p99_us"))
            else {
                missing(md, &figure);
                continue;
            };
            let conc = num(r, &figure, "concurrency").unwrap_or(1.0);
            let count = num(r, &figure, "count").unwrap_or(0.0);
            let note = match (kind, invoice) {
                ("invoice_only", _) => "the backend's share: the floor under a challenge".to_owned(),
                ("sequential", Some(inv)) => format!(
                    "the invoice alone is about {:.0}% of a challenge's median; issue 6 sets no number",
                    (inv / med * 100.0).min(100.0)
                ),
                _ => format!("{conc:.0} tasks at once: throughput when several clients ask together"),
            };
            let _ = writeln!(
                md,
                "| {label}: {what} ({count:.0}) | {per_sec:.0} | {:.2} ms | {:.2} ms | {} | {note} |",
                med / 1e3,
                p99 / 1e3,
                machine(r, &figure)
            );
        }
    }
}

/// The paying client.
pub(crate) fn client(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "`l402_client::Client` paying from alice's LDK node, against `l402 proxy` (process, LND-sim backend) over a \
         `hello` upstream; the plain requests use the same `reqwest::Client` and credential.\n"
    );
    let _ = writeln!(md, "| Figure | Result | other processes' CPU / iowait | Interpretation |");
    let _ = writeln!(md, "|---|---|---|---|");
    let c = "client.cached_token";
    match (num(r, c, "client_median_us"), num(r, c, "plain_median_us"), num(r, c, "overhead_us"), num(r, c, "ratio")) {
        (Some(cu), Some(pu), Some(over), Some(ratio)) => {
            let n = num(r, c, "requests").unwrap_or(0.0);
            let _ = writeln!(
                md,
                "| request with a cached token: Client vs plain reqwest (median of {n:.0} each, interleaved) | \
                 {cu:.0} µs vs {pu:.0} µs: +{over:.0} µs, x{ratio:.2} | {} | the client's own cost per request (token \
                 lookup in its SQLite store, header, last-use write); issue 6 asks for it, sets no number |",
                machine(r, c)
            );
        }
        _ => missing(md, c),
    }
    let p = "client.paid_request";
    match (num(r, p, "from_402_median_ms"), num(r, p, "total_median_ms")) {
        (Some(from), Some(total)) => {
            let n = num(r, p, "payments").unwrap_or(0.0);
            let (lo, hi) = (num(r, p, "min_from_402_ms").unwrap_or(0.0), num(r, p, "max_from_402_ms").unwrap_or(0.0));
            let _ = writeln!(
                md,
                "| time from 402 to 200 with a real regtest payment, each a fresh token (median of {n:.0}) | {from:.1} ms \
                 (min {lo:.1}, max {hi:.1}) | {} | from the client's `Paying` report (402 received and checked, payment \
                 journaled) to the 200; issue 6 asks for the median of 50 |",
                machine(r, p)
            );
            let _ = writeln!(
                md,
                "| the whole paid request: GET, 402 (invoice via LND-sim), pay, retry, 200 (median of {n:.0}) | {total:.1} \
                 ms | {} | adds the first round trip and the challenge's invoice creation |",
                machine(r, p)
            );
        }
        _ => missing(md, p),
    }
}

/// `l402 proxy` beside Aperture, both on the same real LND node, and real payment latency.
pub(crate) fn peers(md: &mut String, r: &Results) {
    let (ours, theirs) = ("peers.ours.valid_token", "peers.aperture.valid_token");
    let wrk = r.get(ours).and_then(|v| v.get("wrk")).and_then(Value::as_str).unwrap_or("?");
    let rounds = r.get(ours).and_then(|v| v.get("runs")).and_then(Value::as_array).map_or(0, Vec::len);
    let warmup = num(r, ours, "warmup_s").unwrap_or(0.0);
    let log = r.get("peers.setup").and_then(|v| v.get("l402_log")).and_then(Value::as_str).unwrap_or("?");
    let price = num(r, "peers.setup", "price_sat").unwrap_or(0.0);
    let _ = writeln!(
        md,
        "`l402 proxy` (the release binary, as its own process, SQLite store) and Aperture (Lightning Labs' L402 \
         proxy, its version under Machine; SQLite store), side by side in the same run: both sell `/api/*` for \
         {price:.0} sat in front of the same upstream (an axum `hello` handler in the bench process) and mint their \
         invoices on the same real LND node; each token was bought with a real payment from a second real LND node \
         over a real channel. Each proxy got the same load, `wrk {wrk}` with its valid token, after an unmeasured \
         {warmup:.0} s warm-up, in {rounds} rounds (odd rounds `l402 proxy` first, even rounds Aperture first): \
         figures are medians over rounds, ratios (ours / Aperture) medians of per-round ratios unless the reading \
         says otherwise. Logging: Aperture at `info` (a line per request, to its console and its log file), \
         `l402 proxy` at `RUST_LOG={log}`. CPU per request: the proxy process's user + system time over the run \
         (/proc/PID/stat) divided by its requests. A challenge: a request without credential answered 402 with a \
         fresh invoice from LND (each 402 parsed, its invoice checked to be new), sent over HTTP keep-alive \
         connections from the bench process.\n"
    );
    let _ = writeln!(md, "| Figure | `l402 proxy` | Aperture | ours / Aperture | Reading |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let ratio = |field: &str| num(r, "peers.valid_token_ratio", field);
    let of_medians = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let row = |md: &mut String,
               what: &str,
               a: Option<f64>,
               b: Option<f64>,
               x: Option<f64>,
               fmt: &dyn Fn(f64) -> String,
               reading: &str| {
        let show = |v: Option<f64>| v.map_or_else(|| "missing".to_owned(), fmt);
        let x = x.map_or_else(|| "-".to_owned(), |x| format!("x{x:.2}"));
        let _ = writeln!(md, "| {what} | {} | {} | {x} | {reading} |", show(a), show(b));
    };
    let us = |v: f64| format!("{v:.0} µs");
    let per_sec = |v: f64| crate::report::thousands(v);
    row(
        md,
        "valid token: req/s",
        num(r, ours, "rps"),
        num(r, theirs, "rps"),
        ratio("rps"),
        &per_sec,
        "higher is better",
    );
    row(
        md,
        "valid token: p50 latency",
        num(r, ours, "p50_us"),
        num(r, theirs, "p50_us"),
        ratio("p50"),
        &us,
        "lower is better",
    );
    row(
        md,
        "valid token: p99 latency",
        num(r, ours, "p99_us"),
        num(r, theirs, "p99_us"),
        ratio("p99"),
        &us,
        "lower is better",
    );
    row(
        md,
        "proxy process CPU per request (user + system)",
        num(r, ours, "proxy_cpu_us"),
        num(r, theirs, "proxy_cpu_us"),
        ratio("cpu"),
        &|v| format!("{v:.1} µs"),
        "the proxy's own cost, apart from wrk and the upstream sharing the cores",
    );
    row(
        md,
        "other processes' share of the machine during the runs",
        num(r, ours, "foreign_cpu"),
        num(r, theirs, "foreign_cpu"),
        None,
        &|v| format!("{:.0}%", v * 100.0),
        "work this benchmark did not start (0% on a quiet machine)",
    );
    let m = "peers.memory";
    for (what, field, reading) in [
        ("VmRSS at rest (after its paid request)", "rest_kib", "ratio of the two figures"),
        ("VmRSS peak under the wrk load (sampled every 20 ms)", "peak_load_kib", "ratio of the two figures"),
        ("VmHWM at the end (after the challenges too)", "vmhwm_kib", "the kernel's high-water mark"),
    ] {
        let (a, b) = (num(r, m, &format!("ours_{field}")), num(r, m, &format!("aperture_{field}")));
        row(md, what, a, b, of_medians(a, b), &mib, reading);
    }
    for (name, label) in [("sequential", "one at a time"), ("concurrent", "concurrent")] {
        let (a, b) = (format!("peers.ours.challenges_{name}"), format!("peers.aperture.challenges_{name}"));
        let conc = num(r, &a, "concurrency").unwrap_or(1.0);
        let count = num(r, &a, "count").unwrap_or(0.0);
        let label = if conc > 1.0 { format!("{conc:.0} {label}") } else { label.to_owned() };
        let ms = |v: f64| format!("{:.2} ms", v / 1e3);
        row(
            md,
            &format!("challenges per second, {label} (median of rounds; {count:.0} each in all)"),
            num(r, &a, "per_sec"),
            num(r, &b, "per_sec"),
            num(r, "peers.challenges_ratio", name),
            &|v| format!("{v:.0}"),
            "higher is better; both wait on the same LND's AddInvoice",
        );
        row(
            md,
            &format!("challenge latency, {label}: median"),
            num(r, &a, "median_us"),
            num(r, &b, "median_us"),
            of_medians(num(r, &a, "median_us"), num(r, &b, "median_us")),
            &ms,
            "ratio of medians; lower is better",
        );
        row(
            md,
            &format!("challenge latency, {label}: p99"),
            num(r, &a, "p99_us"),
            num(r, &b, "p99_us"),
            of_medians(num(r, &a, "p99_us"), num(r, &b, "p99_us")),
            &ms,
            "ratio of the two figures",
        );
        row(
            md,
            &format!("CPU per challenge, {label}: the proxy process / the LND node"),
            num(r, &a, "proxy_cpu_us"),
            num(r, &b, "proxy_cpu_us"),
            of_medians(num(r, &a, "proxy_cpu_us"), num(r, &b, "proxy_cpu_us")),
            &|v| format!("{v:.0} µs"),
            &format!(
                "LND's CPU per challenge: {} for ours, {} for Aperture",
                num(r, &a, "lnd_cpu_us").map_or_else(|| "?".to_owned(), |v| format!("{v:.0} µs")),
                num(r, &b, "lnd_cpu_us").map_or_else(|| "?".to_owned(), |v| format!("{v:.0} µs"))
            ),
        );
    }
    row(
        md,
        "the payment that bought the token (payer LND -> operator LND)",
        num(r, "peers.ours.real_payment", "ms"),
        num(r, "peers.aperture.real_payment", "ms"),
        None,
        &|v| format!("{v:.1} ms"),
        "one real payment each, not a median",
    );

    let _ = writeln!(md, "\nReal Lightning payments on the same network, one at a time (after one unmeasured):\n");
    let _ = writeln!(md, "| Direction | Median | Min | Max | Payments |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (key, what) in [
        ("lnd_to_ldk", "LND -> LDK (real LND, `l402-lnd` SendPaymentV2, to an embedded LDK node)"),
        ("lnd_to_lnd", "LND -> LND (real LND to real LND, one channel)"),
        ("ldk_to_ldk", "LDK -> LDK (embedded nodes, one channel)"),
    ] {
        let f = format!("peers.payment.{key}");
        match (num(r, &f, "median_ms"), num(r, &f, "min_ms"), num(r, &f, "max_ms"), num(r, &f, "count")) {
            (Some(med), Some(lo), Some(hi), Some(n)) => {
                let _ = writeln!(md, "| {what} | {med:.1} ms | {lo:.1} ms | {hi:.1} ms | {n:.0} |");
            }
            _ => {
                let _ = writeln!(md, "| {what} | missing | | | |");
            }
        }
    }
    if let Some(reason) = r.get("peers.lnget").and_then(|v| v.get("reason")).and_then(Value::as_str) {
        let _ = writeln!(md, "\nNot measured: {reason}.");
    }
}
