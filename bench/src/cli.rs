//! The command line: `tether-bench [--json] <scenario> [options]`.
//!
//! Each scenario is a subcommand with its own options struct (in its module
//! under [`crate::scenarios`]); [`RunArgs`] holds what every scenario shares.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::report::Report;
use crate::scenarios::{amqp, amqp_durable, mqtt, mqtt_amqp, mqtt_connections};
use crate::sink;

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
    /// AMQP 0-9-1: producers and consumers on one queue, transient or
    /// persistent, with or without confirms, at maximum or fixed rate.
    Amqp(amqp::Args),
    /// AMQP 0-9-1: persistent messages with publisher confirms into a durable
    /// queue, consumed with manual acks.
    AmqpDurable(amqp_durable::Args),
    /// MQTT 3.1.1 or 5: publishers and subscribers at maximum or fixed rate
    /// (pairs, fan-out, fan-in, shared subscriptions).
    Mqtt(mqtt::Args),
    /// MQTT publishers to AMQP consumers through amq.topic.
    MqttAmqp(mqtt_amqp::Args),
    /// MQTT: opens many idle connections at a target rate and holds them
    /// (connect rate, connect latency, broker memory per connection).
    MqttConnections(mqtt_connections::Args),
    /// A null-sink MQTT and AMQP broker that acknowledges and drops
    /// everything, to measure the load generator's own ceiling (prints
    /// `sink listening ...` once bound; reports at SIGINT, SIGTERM or
    /// `--duration`).
    Sink(sink::Args),
}

impl Scenario {
    /// Runs the scenario to the end of its measured window.
    pub async fn run(self) -> Result<Report, Error> {
        match self {
            Scenario::Amqp(args) => amqp::run(args).await,
            Scenario::AmqpDurable(args) => amqp_durable::run(args).await,
            Scenario::Mqtt(args) => mqtt::run(args).await,
            Scenario::MqttAmqp(args) => mqtt_amqp::run(args).await,
            Scenario::MqttConnections(args) => mqtt_connections::run(args).await,
            Scenario::Sink(args) => sink::run(args).await,
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
    /// Process id of the broker, to report its CPU time per message and its
    /// memory (read from `/proc`, so the broker must run on this machine).
    #[arg(long)]
    pub broker_pid: Option<u32>,
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
        let Scenario::AmqpDurable(a) = cli.scenario else {
            panic!("wrong scenario")
        };
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
        let Scenario::AmqpDurable(a) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert!(cli.json);
        assert_eq!((a.publishers, a.consumers), (4, 2));
        assert_eq!(a.run.duration, Duration::from_secs(60));
        assert_eq!(a.run.warmup, Duration::ZERO);
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn mqtt_options_parse() {
        let cli = Cli::try_parse_from([
            "tether-bench",
            "mqtt",
            "--mqtt-version",
            "5",
            "--qos",
            "2",
            "--filter",
            "$share/g/bench/#",
        ])
        .unwrap();
        let Scenario::Mqtt(a) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert!(a.version.is_v5());
        assert_eq!(a.qos.as_u8(), 2);
        assert_eq!(a.filter, "$share/g/bench/#");
        assert!(Cli::try_parse_from(["tether-bench", "mqtt", "--size", "4"]).is_err());
        assert!(Cli::try_parse_from(["tether-bench", "mqtt", "--qos", "3"]).is_err());
    }

    #[test]
    fn amqp_options_parse_and_default_to_transient_without_confirms() {
        let cli = Cli::try_parse_from(["tether-bench", "amqp"]).unwrap();
        let Scenario::Amqp(a) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert_eq!(a.uri, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!((a.producers, a.consumers, a.size), (1, 1, 16));
        assert_eq!((a.confirm_window, a.prefetch, a.rate), (0, 0, 0.0));
        assert!(!a.persistent && !a.autoack);
        assert_eq!(a.queue, "tether-bench-amqp");

        let cli = Cli::try_parse_from([
            "tether-bench",
            "amqp",
            "--producers",
            "2",
            "--consumers",
            "0",
            "--size",
            "1024",
            "--persistent",
            "--confirm-window",
            "256",
            "--prefetch",
            "256",
            "--autoack",
            "--rate",
            "10000",
            "--queue",
            "q",
            "--duration",
            "3s",
        ])
        .unwrap();
        let Scenario::Amqp(a) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert_eq!((a.producers, a.consumers, a.size), (2, 0, 1024));
        assert_eq!((a.confirm_window, a.prefetch, a.rate), (256, 256, 10000.0));
        assert!(a.persistent && a.autoack);
        assert_eq!(
            (a.queue.as_str(), a.run.duration),
            ("q", Duration::from_secs(3))
        );
        assert!(Cli::try_parse_from(["tether-bench", "amqp", "--size", "7"]).is_err());
    }

    #[test]
    fn mqtt_amqp_and_sink_options_parse() {
        let cli = Cli::try_parse_from([
            "tether-bench",
            "mqtt-amqp",
            "--mqtt-addr",
            "127.0.0.1:1884",
            "--amqp-uri",
            "amqp://127.0.0.1:5673/%2f",
            "--mqtt-version",
            "5",
            "--publishers",
            "3",
            "--consumers",
            "2",
            "--qos",
            "1",
            "--size",
            "64",
            "--rate",
            "100",
            "--topic",
            "fleet/{i}",
            "--credentials",
            "guest:guest",
            "--queue",
            "q",
        ])
        .unwrap();
        let Scenario::MqttAmqp(a) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert_eq!(a.mqtt_addr.port(), 1884);
        assert!(a.version.is_v5());
        assert_eq!((a.publishers, a.consumers, a.qos.as_u8()), (3, 2, 1));
        assert_eq!((a.size, a.rate), (64, 100.0));
        assert_eq!(a.credentials.as_deref(), Some("guest:guest"));
        assert_eq!(
            crate::scenarios::mqtt_amqp::binding_key(&a.topic),
            "fleet.#"
        );
        let Scenario::MqttAmqp(d) = Cli::try_parse_from(["tether-bench", "mqtt-amqp"])
            .unwrap()
            .scenario
        else {
            panic!("wrong scenario")
        };
        assert_eq!(
            (d.queue.as_str(), d.topic.as_str()),
            ("tether-bench-mqtt-amqp", "bench/{i}")
        );

        let cli = Cli::try_parse_from([
            "tether-bench",
            "sink",
            "--amqp-listen",
            "127.0.0.1:5673",
            "--duration",
            "1m",
        ])
        .unwrap();
        let Scenario::Sink(s) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert_eq!(s.mqtt_listen, None);
        assert_eq!(s.amqp_listen.map(|a| a.port()), Some(5673));
        assert_eq!(s.duration, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_zero_confirm_window_is_refused() {
        assert!(
            Cli::try_parse_from(["tether-bench", "amqp-durable", "--confirm-window", "0"]).is_err()
        );
    }
}
