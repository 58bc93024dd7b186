//! The result of a run, as a table for people or JSON for scripts.
//!
//! A [`Report`] is scenario-neutral: a scenario fills in its parameters,
//! rates, latencies and whole-run totals in the order they should be read,
//! and the JSON form keeps that order (`jq .rates.confirmed.per_second`).

use std::fmt::Write as _;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::latency::LatencySummary;

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's subcommand name.
    pub scenario: String,
    /// The broker measured (credentials removed).
    pub target: String,
    /// The options that shape the load.
    #[serde(serialize_with = "in_order")]
    pub parameters: Vec<(String, Value)>,
    /// Length of the measured window, in seconds.
    pub measured_seconds: f64,
    /// Counts in the measured window and their rates.
    #[serde(serialize_with = "in_order")]
    pub rates: Vec<(String, Rate)>,
    /// Latency distributions measured in the window.
    #[serde(serialize_with = "in_order")]
    pub latencies: Vec<(String, LatencySummary)>,
    /// Counts over the whole run, warm-up and drain included (to relate to a
    /// broker's own counters, such as Tether's `storage totals`).
    #[serde(serialize_with = "in_order")]
    pub totals: Vec<(String, u64)>,
    /// CPU and memory in the window: the broker's (with `--broker-pid`) and
    /// the load generator's own, to show it was not the bottleneck.
    #[serde(serialize_with = "in_order")]
    pub resources: Vec<(String, f64)>,
}

/// The resource figures of a window of `seconds` in which `messages` were
/// handled (published and delivered): CPU seconds and cores used by the
/// broker and by this process, the broker's CPU µs per message and its
/// resident memory.
pub fn resources(
    broker_cpu: Option<f64>,
    bench_cpu: f64,
    seconds: f64,
    messages: u64,
    broker_pid: Option<u32>,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let cores = |cpu: f64| if seconds > 0.0 { cpu / seconds } else { 0.0 };
    if let Some(cpu) = broker_cpu {
        out.push(("broker_cpu_seconds".to_owned(), cpu));
        out.push(("broker_cores".to_owned(), cores(cpu)));
        if messages > 0 {
            out.push((
                "broker_cpu_us_per_message".to_owned(),
                cpu * 1e6 / messages as f64,
            ));
        }
    }
    if let Some(rss) = broker_pid.and_then(|p| crate::probe::rss_bytes(Some(p))) {
        out.push(("broker_rss_mib".to_owned(), rss as f64 / (1024.0 * 1024.0)));
    }
    out.push(("bench_cpu_seconds".to_owned(), bench_cpu));
    out.push(("bench_cores".to_owned(), cores(bench_cpu)));
    out
}

/// A count in the measured window and its rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// How many.
    pub messages: u64,
    /// How many per second.
    pub per_second: f64,
}

impl Rate {
    /// `messages` over `seconds` (0 per second for an empty window).
    pub fn over(messages: u64, seconds: f64) -> Rate {
        let per_second = if seconds > 0.0 {
            messages as f64 / seconds
        } else {
            0.0
        };
        Rate {
            messages,
            per_second,
        }
    }
}

fn in_order<S: Serializer, T: Serialize>(v: &[(String, T)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // A Report holds only strings, numbers and maps with string keys.
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The report as an aligned plain-text table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} against {}", self.scenario, self.target);
        let params: Vec<String> = self
            .parameters
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        if !params.is_empty() {
            let _ = writeln!(out, "  {}", params.join("  "));
        }
        let _ = writeln!(out, "  measured {:.1} s\n", self.measured_seconds);
        let _ = writeln!(out, "  {:<16} {:>12} {:>12}", "", "messages", "msg/s");
        for (name, r) in &self.rates {
            let _ = writeln!(
                out,
                "  {:<16} {:>12} {:>12.0}",
                name, r.messages, r.per_second
            );
        }
        if !self.latencies.is_empty() {
            let _ = writeln!(
                out,
                "\n  {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency (ms)", "samples", "p50", "p90", "p99", "p99.9", "max"
            );
            for (name, l) in &self.latencies {
                let _ = writeln!(
                    out,
                    "  {:<16} {:>10} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    name, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                );
            }
        }
        if !self.resources.is_empty() {
            let res: Vec<String> = self
                .resources
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            let _ = writeln!(out, "\n  resources: {}", res.join(", "));
        }
        if !self.totals.is_empty() {
            let totals: Vec<String> = self
                .totals
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                out,
                "\n  whole run (warm-up and drain included): {}",
                totals.join(", ")
            );
        }
        out
    }
}

/// `uri` with any password replaced by `***`, for printing.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            scenario: "amqp-durable".into(),
            target: "amqp://127.0.0.1:5672/%2f".into(),
            parameters: vec![
                ("publishers".into(), 4.into()),
                ("queue".into(), "q".into()),
            ],
            measured_seconds: 2.0,
            rates: vec![("confirmed".into(), Rate::over(100, 2.0))],
            latencies: vec![("confirm".into(), LatencySummary::default())],
            totals: vec![("published".into(), 150)],
            resources: resources(Some(1.0), 0.5, 2.0, 100, None),
        }
    }

    #[test]
    fn json_keeps_names_as_keys() {
        let v: Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(v["rates"]["confirmed"]["per_second"], 50.0);
        assert_eq!(v["parameters"]["publishers"], 4);
        assert_eq!(v["totals"]["published"], 150);
    }

    #[test]
    fn table_shows_rates_and_parameters() {
        let t = report().to_table();
        assert!(t.contains("publishers=4  queue=q"), "{t}");
        assert!(t.contains("confirmed"), "{t}");
        assert!(t.contains("50"), "{t}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host/%2f"), "amqp://host/%2f");
    }
}
