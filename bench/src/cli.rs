//! The command line: `tether-bench [--json] <scenario> [options]`.
//!
//! Each scenario is a subcommand with its own options struct (in its module
//! under [`crate::scenarios`]); [`RunArgs`] holds what every scenario shares.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::report::Report;
use crate::scenarios::amqp_durable;

/// `tether-bench`: drives load against a broker and reports throughput and
/// latency.
#[derive(Debug, Parser)]
#[command(name = "tether-bench", version, about, propagate_version = true)]
pub struct Cli {
    /// Print the report as one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// One subcommand per scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// AMQP 0-9-1: persistent messages with publisher confirms into a durable
    /// queue, consumed with manual acks.
    AmqpDurable(amqp_durable::Args),
}

impl Scenario {
    /// Runs the scenario to the end of its measured window.
    pub async fn run(self) -> Result<Report, Error> {
        match self {
            Scenario::AmqpDurable(args) => amqp_durable::run(args).await,
        }
    }
}

/// Timing options every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// How long to measure, after the warm-up (e.g. `20s`, `1m`).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring (connections warm, caches filled,
    /// queues at their steady length); `0s` measures from the start.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_durable_defaults_match_the_issue_benchmark() {
        let cli = Cli::try_parse_from(["tether-bench", "amqp-durable"]).unwrap();
        let Scenario::AmqpDurable(a) = cli.scenario;
        assert!(!cli.json);
        assert_eq!(a.size, 1024);
        assert_eq!(a.confirm_window, 256);
        assert_eq!(a.prefetch, 256);
        assert_eq!((a.publishers, a.consumers), (1, 1));
        assert_eq!(a.run.duration, Duration::from_secs(20));
        assert_eq!(a.run.warmup, Duration::from_secs(5));
    }

    #[test]
    fn options_and_a_trailing_json_flag_parse() {
        let cli = Cli::try_parse_from([
            "tether-bench",
            "amqp-durable",
            "--uri",
            "amqp://guest:guest@127.0.0.1:5673/%2f",
            "--publishers",
            "4",
            "--consumers",
            "2",
            "--duration",
            "1m",
            "--warmup",
            "0s",
            "--json",
        ])
        .unwrap();
        let Scenario::AmqpDurable(a) = cli.scenario;
        assert!(cli.json);
        assert_eq!((a.publishers, a.consumers), (4, 2));
        assert_eq!(a.run.duration, Duration::from_secs(60));
        assert_eq!(a.run.warmup, Duration::ZERO);
    }

    #[test]
    fn a_zero_confirm_window_is_refused() {
        assert!(
            Cli::try_parse_from(["tether-bench", "amqp-durable", "--confirm-window", "0"]).is_err()
        );
    }
}
