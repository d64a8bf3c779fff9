//! `l402-bench`: the whole-system benchmarks of l402, on a real regtest network (bitcoind, LDK nodes, real
//! channels and payments; LND is the project's simulator over a real LDK node, except in `peers`, which runs
//! real LND). Not published.
//!
//! Subcommands: `proxy` (wrk against `l402 proxy` run as a process, beside nginx `proxy_pass` in front of
//! the same upstream: throughput, latency, paywall cost, 1,000,000 tokens in rotation, memory; `--perf-dir`
//! profiles it), `addresses` (the proxy's memory while a million distinct client addresses hit it),
//! `challenges` (challenges per second with the embedded LDK node and with
//! LND-sim), `client` (cached-token overhead of `l402_client::Client`, time from 402 to 200), `peers`
//! (`l402 proxy` side by side with Aperture, both on the same real LND node; real payment latency LND -> LDK,
//! LND -> LND, LDK -> LDK), and `report` (BENCHMARKS.md from a results directory). Each figure is printed as
//! a `RESULT {json}` line and a human line. `scripts/bench.sh` runs the whole suite. A benchmark, not a test:
//! nothing asserts a speed.
//!
//! Modules: `net` (network, LND simulator, upstream, paying a challenge), `proxyproc` (the proxy process and
//! its memory), `nginx` (nginx as the yardstick), `profile` (perf), `sys` (CPU accounting from /proc), `wrk`
//! (load runs, token rotations), `tokens` (tokens minted for the rotations),
//! `output` (result lines, medians), one module per subcommand (`peers` reuses `proxy_bench`'s load runs),
//! `report`, `report_proxy` and `report_sections` (the Markdown).

mod addresses;
mod challenges;
mod client_bench;
mod metered;
mod net;
mod nginx;
mod output;
mod peers;
mod profile;
mod proxy_bench;
mod proxyproc;
mod report;
mod report_proxy;
mod report_sections;
mod sys;
mod tokens;
mod wrk;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "l402-bench", about = "Whole-system benchmarks of l402 on a real regtest network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// wrk against `l402 proxy` (a separate process) and nginx: upstream direct, nginx proxy_pass, payment
    /// off, valid token, 1M tokens in rotation.
    Proxy(proxy_bench::ProxyArgs),
    /// The proxy's memory while a million distinct client addresses (127.0.0.0/8 sources) hit it.
    Addresses(addresses::AddressesArgs),
    /// Challenges per second (mint + invoice) with the embedded LDK node and with LND-sim.
    Challenges(challenges::ChallengeArgs),
    /// The paying client: cached-token overhead, time from 402 to 200 with real payments.
    Client(client_bench::ClientArgs),
    /// Time to first byte of a streamed chat completion through a metered service, beside direct and a plain
    /// service (a bundle bought with a real payment).
    Metered(metered::MeteredArgs),
    /// `l402 proxy` beside Aperture on the same real LND node (wrk, challenges, memory); payment latency
    /// LND -> LDK, LND -> LND, LDK -> LDK.
    Peers(peers::PeersArgs),
    /// Writes BENCHMARKS.md from the outputs collected by scripts/bench.sh.
    Report(report::ReportArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(args) => report::run(args),
        command => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
                |rt| {
                    rt.block_on(async {
                        match command {
                            Command::Proxy(args) => proxy_bench::run(args).await,
                            Command::Addresses(args) => addresses::run(args).await,
                            Command::Challenges(args) => challenges::run(args).await,
                            Command::Client(args) => client_bench::run(args).await,
                            Command::Peers(args) => peers::run(args).await,
                            Command::Metered(args) => metered::run(args).await,
                            Command::Report(_) => Ok(()),
                        }
                    })
                },
            )
        }
    };
    if let Err(e) = result {
        eprintln!("l402-bench: error: {e:#}");
        std::process::exit(1);
    }
}
