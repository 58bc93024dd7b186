//! The comparison report: reads a `scripts/bench-compare` results directory
//! (one `<case>--<peer>.json` report or `<case>--<peer>.failed` reason per
//! run, and `meta.json`) and renders `BENCHMARKS.md` and the ratio chart.
//!
//! The [`SCENARIOS`] catalogue is the one place that knows what each case
//! measures: which report figures are its headline, which way is better,
//! which figure the Tether ÷ peer ratio is taken on, and the targets of the
//! issue. The script decides how a case is run; this module only reads what
//! the runs wrote, so a report from a newer tether-bench renders as long as
//! the figure names stay.
//!
//! Nothing here measures or starts anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::Value;

/// The peers, in table order, with the protocols they speak.
pub const PEERS: &[Peer] = &[
    Peer {
        id: "tether",
        name: "Tether",
        amqp: true,
    },
    Peer {
        id: "mosquitto",
        name: "Mosquitto",
        amqp: false,
    },
    Peer {
        id: "rumqttd",
        name: "rumqttd",
        amqp: false,
    },
    Peer {
        id: "rabbitmq",
        name: "RabbitMQ",
        amqp: true,
    },
];

/// The null sink of the load generator ceiling.
const SINK: Peer = Peer {
    id: "sink",
    name: "null sink",
    amqp: true,
};

/// A broker the comparison runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The name in result file names (`<case>--<id>.json`).
    pub id: &'static str,
    /// The name shown in tables.
    pub name: &'static str,
    /// Whether it speaks AMQP 0-9-1 (every peer speaks MQTT).
    pub amqp: bool,
}

/// Which peers a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every peer.
    Mqtt,
    /// Peers that speak AMQP (for a bridge case, both protocols).
    Amqp,
    /// Only the load generator's null sink.
    Sink,
}

impl Protocol {
    /// The peers of a case of this protocol, in table order.
    pub fn peers(self) -> Vec<Peer> {
        match self {
            Protocol::Mqtt => PEERS.to_vec(),
            Protocol::Amqp => PEERS.iter().copied().filter(|p| p.amqp).collect(),
            Protocol::Sink => vec![SINK],
        }
    }
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput, connect rate.
    Higher,
    /// Latency, CPU, memory.
    Lower,
}

/// How a figure is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A rate or a count, printed whole with thousands separators.
    Count,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Bytes, printed in KiB.
    KiB,
    /// CPU cores.
    Cores,
}

/// One number read from a report.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Column heading.
    pub label: &'static str,
    /// Dotted paths into the report JSON; the first one present is used
    /// (`rates.consumed.per_second` in one scenario is
    /// `rates.received.per_second` in another).
    pub paths: &'static [&'static str],
    /// How it is printed.
    pub unit: Unit,
    /// Which way is better.
    pub better: Better,
}

impl Figure {
    /// The figure's value in `report`, if the report has it.
    pub fn read(&self, report: &Value) -> Option<f64> {
        self.paths.iter().find_map(|p| lookup(report, p))
    }
}

/// A ratio target against one peer: Tether's figure at least `ratio` times
/// better than the peer's.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The peer's id.
    pub peer: &'static str,
    /// The least ratio that meets the target.
    pub ratio: f64,
}

/// A bound on one of Tether's own figures (`p99 under 1 ms`).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Index into the case's figures.
    pub figure: usize,
    /// The bound, in the figure's unit as printed (ms, KiB, msg/s).
    pub limit: f64,
    /// Whether the figure must stay at or under `limit` (or reach it).
    pub at_most: bool,
}

/// One run shape of a scenario (a payload size, a rate).
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The id in result file names.
    pub id: &'static str,
    /// What distinguishes it within its scenario.
    pub title: &'static str,
    /// The figures in its table.
    pub figures: &'static [Figure],
    /// The figure the Tether ÷ peer ratio is taken on (the headline).
    pub ratio: Option<usize>,
    /// Ratio targets.
    pub targets: &'static [Target],
    /// Bounds on Tether's own figures.
    pub bounds: &'static [Bound],
}

/// A scenario of the issue: a section of BENCHMARKS.md.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Section heading.
    pub title: &'static str,
    /// What the runs do, for the reader.
    pub description: &'static str,
    /// Who takes part.
    pub protocol: Protocol,
    /// Its runs.
    pub cases: &'static [Case],
}

const DELIVERED: Figure = Figure {
    label: "delivered msg/s",
    paths: &["rates.received.per_second", "rates.consumed.per_second"],
    unit: Unit::Count,
    better: Better::Higher,
};
const CPU_PER_MSG: Figure = Figure {
    label: "broker CPU µs/msg",
    paths: &["resources.broker_cpu_us_per_message"],
    unit: Unit::Us,
    better: Better::Lower,
};
const BROKER_CORES: Figure = Figure {
    label: "broker cores",
    paths: &["resources.broker_cores"],
    unit: Unit::Cores,
    better: Better::Lower,
};
const fn latency(label: &'static str, paths: &'static [&'static str]) -> Figure {
    Figure {
        label,
        paths,
        unit: Unit::Ms,
        better: Better::Lower,
    }
}
const P50: Figure = latency("p50 ms", &["latencies.deliver.p50_ms"]);
const P99: Figure = latency("p99 ms", &["latencies.deliver.p99_ms"]);
const P999: Figure = latency("p99.9 ms", &["latencies.deliver.p999_ms"]);

const MQTT_MAX: &[Figure] = &[DELIVERED, CPU_PER_MSG];
const MQTT_MAX_TARGETS: &[Target] = &[
    Target {
        peer: "mosquitto",
        ratio: 2.0,
    },
    Target {
        peer: "rumqttd",
        ratio: 1.5,
    },
];
const FAN_IN: &[Figure] = &[DELIVERED, P99, CPU_PER_MSG, BROKER_CORES];
const FIXED_RATE: &[Figure] = &[DELIVERED, P50, P99, P999];
const AMQP_TRANSIENT: &[Figure] = &[DELIVERED, CPU_PER_MSG];
const RABBIT_3X: &[Target] = &[Target {
    peer: "rabbitmq",
    ratio: 3.0,
}];

const fn fixed(id: &'static str, title: &'static str) -> Case {
    Case {
        id,
        title,
        figures: FIXED_RATE,
        ratio: Some(2),
        targets: &[],
        bounds: &[],
    }
}

/// Every scenario of issue 8, in order, and the load generator ceiling last.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        title: "1. MQTT QoS 0, 1 → 1, maximum rate",
        description: "One publisher, one subscriber, QoS 0 both ways, publishing as fast as the broker takes it. Delivered msg/s and the broker's CPU per message (published plus delivered).",
        protocol: Protocol::Mqtt,
        cases: &[
            Case {
                id: "s1-16B",
                title: "16 B payload",
                figures: MQTT_MAX,
                ratio: Some(0),
                targets: MQTT_MAX_TARGETS,
                bounds: &[],
            },
            Case {
                id: "s1-1KiB",
                title: "1 KiB payload",
                figures: MQTT_MAX,
                ratio: Some(0),
                targets: MQTT_MAX_TARGETS,
                bounds: &[],
            },
        ],
    },
    Scenario {
        title: "2. MQTT QoS 1, 100 publisher/subscriber pairs, 100 B",
        description: "100 pairs, each publisher on its own topic, QoS 1 both ways, maximum rate with the in-flight window in meta.json (`s2_inflight`). Delivered msg/s and publish-to-deliver latency.",
        protocol: Protocol::Mqtt,
        cases: &[Case {
            id: "s2",
            title: "100 pairs",
            figures: &[DELIVERED, P50, P99, CPU_PER_MSG],
            ratio: Some(0),
            targets: &[Target {
                peer: "mosquitto",
                ratio: 1.5,
            }],
            bounds: &[Bound {
                figure: 2,
                limit: 1.0,
                at_most: true,
            }],
        }],
    },
    Scenario {
        title: "3. MQTT fan-out, 5 publishers → 1,000 subscribers, 16 B",
        description: "Five publishers at maximum rate on one topic, 1,000 subscribers of it, QoS 0. Deliveries/s (every subscriber's count) and publish-to-deliver p99.",
        protocol: Protocol::Mqtt,
        cases: &[Case {
            id: "s3",
            title: "1,000 subscribers",
            figures: &[
                Figure {
                    label: "deliveries/s",
                    ..DELIVERED
                },
                P99,
                CPU_PER_MSG,
            ],
            ratio: Some(0),
            targets: &[Target {
                peer: "mosquitto",
                ratio: 3.0,
            }],
            bounds: &[],
        }],
    },
    Scenario {
        title: "4. MQTT fan-in, 10,000 publishers at 1 msg/s",
        description: "10,000 publishers, one message per second each on their own topic, QoS 1, into one `bench/#` subscriber, or a `$share/g/bench/#` group of two. The load is fixed, so the ratio is on the broker's CPU per message (peer ÷ Tether).",
        protocol: Protocol::Mqtt,
        cases: &[
            Case {
                id: "s4-wildcard",
                title: "one `#` subscriber",
                figures: FAN_IN,
                ratio: Some(2),
                targets: &[],
                bounds: &[],
            },
            Case {
                id: "s4-share",
                title: "a `$share` group of two",
                figures: FAN_IN,
                ratio: Some(2),
                targets: &[],
                bounds: &[],
            },
        ],
    },
    Scenario {
        title: "5. Idle MQTT connections",
        description: "Idle MQTT connections opened at a target rate from 127.0.0.1 … 127.0.0.100 and held: the broker's resident memory growth per connection (ratio peer ÷ Tether) and the connect rate reached. Connection counts per peer are in the table; the memory figure is per connection.",
        protocol: Protocol::Mqtt,
        cases: &[Case {
            id: "s5",
            title: "idle connections",
            figures: &[
                Figure {
                    label: "connections",
                    paths: &["totals.connected"],
                    unit: Unit::Count,
                    better: Better::Higher,
                },
                Figure {
                    label: "connects/s",
                    paths: &["rates.connected.per_second"],
                    unit: Unit::Count,
                    better: Better::Higher,
                },
                latency("connect p99 ms", &["latencies.connect.p99_ms"]),
                Figure {
                    label: "KiB per connection",
                    paths: &["resources.broker_bytes_per_connection"],
                    unit: Unit::KiB,
                    better: Better::Lower,
                },
            ],
            ratio: Some(3),
            targets: &[Target {
                peer: "rabbitmq",
                ratio: 20.0,
            }],
            bounds: &[
                Bound {
                    figure: 3,
                    limit: 4.0,
                    at_most: true,
                },
                Bound {
                    figure: 1,
                    limit: 2000.0,
                    at_most: false,
                },
            ],
        }],
    },
    Scenario {
        title: "6. AMQP transient, 1 producer → 1 consumer, autoack",
        description: "Transient messages through a queue, one producer at maximum rate, one consumer with automatic acknowledgement.",
        protocol: Protocol::Amqp,
        cases: &[
            Case {
                id: "s6-16B",
                title: "16 B body",
                figures: AMQP_TRANSIENT,
                ratio: Some(0),
                targets: RABBIT_3X,
                bounds: &[],
            },
            Case {
                id: "s6-1KiB",
                title: "1 KiB body",
                figures: AMQP_TRANSIENT,
                ratio: Some(0),
                targets: RABBIT_3X,
                bounds: &[],
            },
        ],
    },
    Scenario {
        title: "7. AMQP persistent, confirm window 256, prefetch 256, 1 KiB",
        description: "Persistent 1 KiB messages into a durable queue (a classic queue on RabbitMQ) with publisher confirms, at most 256 unconfirmed; one consumer, prefetch 256, manual acknowledgements (one `multiple` ack per read). A confirm waits for the disk.",
        protocol: Protocol::Amqp,
        cases: &[Case {
            id: "s7",
            title: "durable queue",
            figures: &[
                Figure {
                    label: "confirmed msg/s",
                    paths: &["rates.confirmed.per_second"],
                    unit: Unit::Count,
                    better: Better::Higher,
                },
                Figure {
                    label: "consumed msg/s",
                    ..DELIVERED
                },
                latency("confirm p99 ms", &["latencies.confirm.p99_ms"]),
                CPU_PER_MSG,
            ],
            ratio: Some(0),
            targets: &[Target {
                peer: "rabbitmq",
                ratio: 2.0,
            }],
            bounds: &[],
        }],
    },
    Scenario {
        title: "8. MQTT publish → AMQP consumer through amq.topic",
        description: "One MQTT publisher (QoS 1, 16 B, maximum rate) and one AMQP consumer of a queue bound to `amq.topic` with the topic's routing key.",
        protocol: Protocol::Amqp,
        cases: &[Case {
            id: "s8",
            title: "MQTT → AMQP",
            figures: &[DELIVERED, P99, CPU_PER_MSG],
            ratio: Some(0),
            targets: &[Target {
                peer: "rabbitmq",
                ratio: 5.0,
            }],
            bounds: &[],
        }],
    },
    Scenario {
        title: "9. Fixed-rate latency",
        description: "One publisher and one subscriber (MQTT QoS 1 both ways, 16 B) or one producer and one consumer (AMQP, transient, confirm window 256, prefetch 256), at a fixed rate. Latency is measured from each message's scheduled send time, so a stalled broker cannot hide it; the ratio is on p99 (peer ÷ Tether).",
        protocol: Protocol::Mqtt,
        cases: &[
            fixed("s9-mqtt-1k", "MQTT QoS 1 at 1,000 msg/s"),
            fixed("s9-mqtt-10k", "MQTT QoS 1 at 10,000 msg/s"),
            fixed("s9-mqtt-100k", "MQTT QoS 1 at 100,000 msg/s"),
            fixed("s9-amqp-1k", "AMQP at 1,000 msg/s"),
            fixed("s9-amqp-10k", "AMQP at 10,000 msg/s"),
            fixed("s9-amqp-100k", "AMQP at 100,000 msg/s"),
        ],
    },
    Scenario {
        title: "Load generator ceiling",
        description: "tether-bench against its own null sink (it acknowledges and discards everything), pinned like a broker: the most each client shape can send on this machine. A broker figure near these is limited by the load generator, not by the broker.",
        protocol: Protocol::Sink,
        cases: &[
            Case {
                id: "ceiling-mqtt-qos0",
                title: "MQTT QoS 0 publisher, 16 B",
                figures: CEILING,
                ratio: None,
                targets: &[],
                bounds: &[],
            },
            Case {
                id: "ceiling-mqtt-qos1",
                title: "MQTT QoS 1 publisher, 16 B",
                figures: CEILING,
                ratio: None,
                targets: &[],
                bounds: &[],
            },
            Case {
                id: "ceiling-amqp",
                title: "AMQP producer, 16 B",
                figures: CEILING,
                ratio: None,
                targets: &[],
                bounds: &[],
            },
        ],
    },
];

const CEILING: &[Figure] = &[
    Figure {
        label: "published msg/s",
        paths: &["rates.published.per_second"],
        unit: Unit::Count,
        better: Better::Higher,
    },
    Figure {
        label: "bench cores",
        paths: &["resources.bench_cores"],
        unit: Unit::Cores,
        better: Better::Lower,
    },
];

/// The peers of `case`: AMQP cases in an MQTT-numbered scenario (9) run
/// against the AMQP peers only.
pub fn case_peers(scenario: &Scenario, case: &Case) -> Vec<Peer> {
    if scenario.protocol == Protocol::Mqtt && case.id.contains("-amqp") {
        Protocol::Amqp.peers()
    } else {
        scenario.protocol.peers()
    }
}

/// What became of one (case, peer) run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run's JSON report.
    Report(Value),
    /// The run failed; the reason the script recorded.
    Failed(String),
    /// Not run (peer or scenario not selected).
    NotRun,
}

/// A results directory, read.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// The run's name (the directory's).
    pub run_id: String,
    /// `meta.json` (machine, versions, settings, commands), or null.
    pub meta: Value,
    /// `(case, peer)` → its outcome; runs absent here were not run.
    pub runs: BTreeMap<(String, String), Outcome>,
}

impl Results {
    /// Reads every `<case>--<peer>.json` / `.failed` file and `meta.json` in
    /// `dir`.
    pub fn read(dir: &Path) -> Result<Results, String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut out = Results {
            run_id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            meta: Value::Null,
            runs: BTreeMap::new(),
        };
        let meta = dir.join("meta.json");
        if meta.exists() {
            let text = fs::read_to_string(&meta).map_err(|e| format!("{}: {e}", meta.display()))?;
            out.meta =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", meta.display()))?;
        }
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let (stem, ext) = match name.rsplit_once('.') {
                Some((s, e @ ("json" | "failed"))) => (s, e),
                _ => continue,
            };
            let Some((case, peer)) = stem.split_once("--") else {
                continue;
            };
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let outcome = if ext == "json" {
                match serde_json::from_str(&text) {
                    Ok(v) => Outcome::Report(v),
                    Err(e) => Outcome::Failed(format!("unreadable report: {e}")),
                }
            } else {
                Outcome::Failed(text.trim().to_owned())
            };
            out.runs.insert((case.to_owned(), peer.to_owned()), outcome);
        }
        Ok(out)
    }

    /// The outcome of `case` against `peer`.
    pub fn outcome(&self, case: &str, peer: &str) -> Outcome {
        self.runs
            .get(&(case.to_owned(), peer.to_owned()))
            .cloned()
            .unwrap_or(Outcome::NotRun)
    }

    /// The headline figure of `case` against `peer`, or why there is none.
    /// A report whose first figure (what was delivered, connected or
    /// published) is zero counts as failed: a peer that accepts a `$share`
    /// filter but routes nothing to it has no CPU per message worth
    /// comparing.
    pub fn headline(&self, case: &Case, peer: &str) -> Result<f64, String> {
        let Outcome::Report(r) = self.outcome(case.id, peer) else {
            return match self.outcome(case.id, peer) {
                Outcome::Failed(why) => Err(why),
                _ => Err("not run".to_owned()),
            };
        };
        let first = &case.figures[0];
        let figure = &case.figures[case.ratio.unwrap_or(0)];
        match (first.read(&r), figure.read(&r)) {
            (Some(v), _) if v <= 0.0 => Err(format!("nothing measured: {} was 0", first.label)),
            (None, _) => Err(format!("the report has no {}", first.label)),
            (_, Some(v)) if v > 0.0 => Ok(v),
            (_, Some(v)) if v < 0.0 => Err(format!(
                "{} was negative ({v:.1}): a measurement error",
                figure.label
            )),
            (_, Some(_)) => Err(format!("{} was 0", figure.label)),
            (_, None) => Err(format!("the report has no {}", figure.label)),
        }
    }

    /// Tether's headline ratio to `peer` in `case`: how many times better
    /// Tether's figure is (Tether ÷ peer for throughput, peer ÷ Tether for
    /// latency, CPU and memory). `None` when either side has no figure.
    pub fn ratio(&self, case: &Case, peer: &str) -> Option<f64> {
        let figure = &case.figures[case.ratio?];
        let tether = self.headline(case, "tether").ok()?;
        let other = self.headline(case, peer).ok()?;
        Some(match figure.better {
            Better::Higher => tether / other,
            Better::Lower => other / tether,
        })
    }

    fn meta_str(&self, path: &str) -> String {
        match lookup_value(&self.meta, path) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "unknown".to_owned(),
            Some(v) => v.to_string(),
        }
    }
}

/// Reads a number at a dotted path (`rates.received.per_second`).
fn lookup(v: &Value, path: &str) -> Option<f64> {
    lookup_value(v, path)?.as_f64()
}

fn lookup_value<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// `v` in `unit`, for a table.
pub fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => thousands(v.round() as u64),
        Unit::Ms => significant(v),
        Unit::Us => format!("{v:.1}"),
        Unit::KiB => format!("{:.2}", v / 1024.0),
        Unit::Cores => format!("{v:.2}"),
    }
}

fn significant(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio as printed: `2.31×`.
pub fn format_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// A figure's value as its bound is written: KiB for memory, as printed
/// otherwise.
fn in_bound_unit(v: f64, unit: Unit) -> f64 {
    if unit == Unit::KiB { v / 1024.0 } else { v }
}

fn bound_text(case: &Case, b: &Bound) -> String {
    let f = &case.figures[b.figure];
    let unit = match f.unit {
        Unit::KiB => " KiB".to_owned(),
        Unit::Ms => " ms".to_owned(),
        _ => String::new(),
    };
    let limit = if f.unit == Unit::Count {
        thousands(b.limit as u64)
    } else {
        b.limit.to_string()
    };
    let op = if b.at_most { "≤" } else { "≥" };
    format!("Tether {} {op} {limit}{unit}", f.label)
}

/// The verdict of one target: met, missed, or unmeasured.
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

/// A line of the summary: what was aimed at, what was measured, the verdict.
struct TargetLine {
    scenario: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

fn target_lines(results: &Results) -> Vec<TargetLine> {
    let mut out = Vec::new();
    for s in SCENARIOS {
        for case in s.cases {
            let label = format!("{} — {}", short_title(s), case.title);
            for t in case.targets {
                let ratio = results.ratio(case, t.peer);
                let figure = &case.figures[case.ratio.unwrap_or(0)];
                out.push(TargetLine {
                    scenario: label.clone(),
                    target: format!(
                        "≥ {} {} ({})",
                        format_ratio(t.ratio),
                        peer_name(t.peer),
                        figure.label
                    ),
                    measured: ratio.map_or_else(|| "n/a".to_owned(), format_ratio),
                    met: ratio.map(|r| r >= t.ratio),
                });
            }
            for b in case.bounds {
                let f = &case.figures[b.figure];
                let v = match results.outcome(case.id, "tether") {
                    Outcome::Report(r) => f.read(&r),
                    _ => None,
                };
                out.push(TargetLine {
                    scenario: label.clone(),
                    target: bound_text(case, b),
                    measured: v.map_or_else(|| "n/a".to_owned(), |v| format_value(v, f.unit)),
                    met: v.map(|v| {
                        let v = in_bound_unit(v, f.unit);
                        if b.at_most {
                            v <= b.limit
                        } else {
                            v >= b.limit
                        }
                    }),
                });
            }
        }
    }
    out
}

fn short_title(s: &Scenario) -> &'static str {
    s.title.split_once('.').map_or(s.title, |(n, _)| n)
}

fn peer_name(id: &str) -> &str {
    PEERS
        .iter()
        .chain(std::iter::once(&SINK))
        .find(|p| p.id == id)
        .map_or(id, |p| p.name)
}

/// Escapes `|` so a reason stays in its table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders BENCHMARKS.md. `findings` is `bench/findings.md`, copied in
/// verbatim when present; `chart` is the chart's path relative to the
/// Markdown file.
pub fn render_markdown(results: &Results, findings: Option<&str>, chart: &str) -> String {
    let mut md = String::new();
    let m = |p: &str| results.meta_str(p);
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Tether against Mosquitto, rumqttd and RabbitMQ (with its MQTT plugin) on one machine, every broker in turn on loopback. \
         Generated by `bench-report` from `bench/results/{}`: edit `bench/findings.md`, not this file.\n",
        results.run_id
    );
    let _ = writeln!(
        md,
        "Produced with `{}` (run {} → {}). Ratios are Tether's figure against the peer's in the same run, \
         oriented so that above 1× means Tether does better.\n",
        m("invocation"),
        m("started"),
        m("finished")
    );
    let _ = writeln!(md, "![Tether's headline ratio to each peer]({chart})\n");

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| scenario | target | measured | met? |");
    let _ = writeln!(md, "|---|---|---:|---|");
    let lines = target_lines(results);
    for l in &lines {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            l.scenario,
            l.target,
            l.measured,
            verdict(l.met)
        );
    }
    let met = lines.iter().filter(|l| l.met == Some(true)).count();
    let missed = lines.iter().filter(|l| l.met == Some(false)).count();
    let _ = writeln!(
        md,
        "\n{met} met, {missed} missed, {} not measured.\n",
        lines.len() - met - missed
    );

    let _ = writeln!(md, "## Machine, versions, settings\n");
    let mem_gib = lookup(&results.meta, "machine.memory_kib").unwrap_or(0.0) / 1048576.0;
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} |", m("machine.cpu"));
    let _ = writeln!(md, "| CPUs | {} |", m("machine.cpus"));
    let _ = writeln!(md, "| memory | {mem_gib:.1} GiB |");
    let _ = writeln!(md, "| kernel | {} |", m("machine.kernel"));
    let _ = writeln!(md, "| pinning | {} |", cell(&m("pinning")));
    for (k, label) in [
        ("tether", "Tether"),
        ("mosquitto", "Mosquitto"),
        ("rumqttd", "rumqttd"),
        ("rabbitmq", "RabbitMQ (Debian package)"),
        ("erlang", "Erlang (Debian erlang-base)"),
        ("rustc", "rustc"),
    ] {
        let _ = writeln!(md, "| {label} | {} |", cell(&m(&format!("versions.{k}"))));
    }
    let _ = writeln!(
        md,
        "| each run | {} warm-up, then {} measured; every broker started fresh for each run |",
        m("settings.warmup"),
        m("settings.duration")
    );
    let _ = writeln!(md, "| connection scale | {} |", m("settings.scale"));
    let _ = writeln!(
        md,
        "| scenario 5 | {} connections asked of each broker, {} of RabbitMQ, at {}/s; file descriptor limit {} (a run is capped 200 below it) |",
        m("settings.s5_connections"),
        m("settings.s5_connections_rabbitmq"),
        m("settings.s5_rate"),
        m("settings.fd_limit")
    );
    let _ = writeln!(
        md,
        "\nBroker configurations are generated by `scripts/bench-compare` (queue and in-flight limits set alike: 10,000 queued and 32 in flight per MQTT session where the broker has such a knob); the exact command lines are at the end.\n"
    );

    let _ = writeln!(md, "## Findings\n");
    match findings {
        Some(text) if !text.trim().is_empty() => {
            let _ = writeln!(md, "{}\n", text.trim_end());
        }
        _ => {
            let _ = writeln!(
                md,
                "_None written yet: profiles and explanations go in `bench/findings.md`, which is copied here verbatim on every render._\n"
            );
        }
    }

    for s in SCENARIOS {
        let _ = writeln!(md, "## {}\n\n{}\n", s.title, s.description);
        for case in s.cases {
            render_case(&mut md, results, s, case);
        }
    }

    let _ = writeln!(md, "## Exact commands\n");
    let _ = writeln!(
        md,
        "Every broker and load generator command of the run, in order (from `meta.json`).\n"
    );
    let _ = writeln!(md, "<details><summary>commands</summary>\n");
    if let Some(runs) = results.meta.get("runs").and_then(Value::as_array) {
        for r in runs {
            let g = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let _ = writeln!(md, "`{}` against {}:\n", g("case"), peer_name(g("peer")));
            let _ = writeln!(md, "```sh");
            if !g("broker_command").is_empty() {
                let _ = writeln!(md, "{}", g("broker_command"));
            }
            if !g("bench_command").is_empty() {
                let _ = writeln!(md, "{}", g("bench_command"));
            }
            if !g("failure").is_empty() {
                let _ = writeln!(md, "# failed: {}", g("failure"));
            }
            let _ = writeln!(md, "```\n");
        }
    }
    let _ = writeln!(md, "</details>");
    md
}

fn render_case(md: &mut String, results: &Results, scenario: &Scenario, case: &Case) {
    let _ = writeln!(md, "### {} (`{}`)\n", case.title, case.id);
    let ratio_label = case.ratio.map(|i| {
        let f = &case.figures[i];
        match f.better {
            Better::Higher => format!("Tether ÷ peer ({})", f.label),
            Better::Lower => format!("peer ÷ Tether ({})", f.label),
        }
    });
    let mut head = vec!["peer".to_owned()];
    head.extend(case.figures.iter().map(|f| f.label.to_owned()));
    if let Some(l) = &ratio_label {
        head.extend([l.clone(), "target".to_owned(), "met?".to_owned()]);
    }
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let align: Vec<&str> = head
        .iter()
        .enumerate()
        .map(|(i, _)| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(md, "|{}|", align.join("|"));
    for peer in case_peers(scenario, case) {
        let mut row = vec![peer.name.to_owned()];
        let outcome = results.outcome(case.id, peer.id);
        match (&outcome, results.headline(case, peer.id)) {
            (Outcome::Report(r), Ok(_)) => {
                row.extend(case.figures.iter().map(|f| {
                    f.read(r)
                        .map_or_else(|| "–".to_owned(), |v| format_value(v, f.unit))
                }));
            }
            (_, Err(why)) => {
                row.push(format!("n/a ({})", cell(&why)));
                row.extend(case.figures.iter().skip(1).map(|_| String::new()));
            }
            (_, Ok(_)) => unreachable!("a headline comes only from a report"),
        }
        if ratio_label.is_some() {
            let target = case.targets.iter().find(|t| t.peer == peer.id);
            if peer.id == "tether" {
                row.extend(["—".to_owned(), String::new(), String::new()]);
            } else {
                let r = results.ratio(case, peer.id);
                row.push(r.map_or_else(|| "n/a".to_owned(), format_ratio));
                row.push(
                    target.map_or_else(String::new, |t| format!("≥ {}", format_ratio(t.ratio))),
                );
                row.push(
                    target
                        .map_or_else(String::new, |t| verdict(r.map(|r| r >= t.ratio)).to_owned()),
                );
            }
        }
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    let _ = writeln!(md);
}

/// One bar of the chart: Tether's headline ratio to `peer` in `case`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The case id (the bar group).
    pub case: &'static str,
    /// The peer's id.
    pub peer: &'static str,
    /// The ratio, if both sides were measured.
    pub ratio: Option<f64>,
    /// Whether both sides were run (a bar without a ratio is then marked
    /// n/a; one not run is left out).
    pub run: bool,
    /// The target ratio, if there is one.
    pub target: Option<f64>,
}

/// The chart's bars, grouped by case in catalogue order (cases with a ratio
/// only; peers other than Tether).
pub fn bars(results: &Results) -> Vec<Bar> {
    let mut out = Vec::new();
    for s in SCENARIOS {
        for case in s.cases.iter().filter(|c| c.ratio.is_some()) {
            for peer in case_peers(s, case).iter().filter(|p| p.id != "tether") {
                out.push(Bar {
                    case: case.id,
                    peer: peer.id,
                    ratio: results.ratio(case, peer.id),
                    run: [peer.id, "tether"]
                        .iter()
                        .all(|p| results.outcome(case.id, p) != Outcome::NotRun),
                    target: case
                        .targets
                        .iter()
                        .find(|t| t.peer == peer.id)
                        .map(|t| t.ratio),
                });
            }
        }
    }
    out
}

/// Renders the grouped bar chart of [`bars`] as SVG (log scale, parity at
/// 1×, targets as black ticks across their bars).
pub fn render_svg(results: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let bars = bars(results);
    let mut groups: Vec<&'static str> = Vec::new();
    for b in &bars {
        if groups.last() != Some(&b.case) {
            groups.push(b.case);
        }
    }
    let values = bars
        .iter()
        .flat_map(|b| b.ratio.into_iter().chain(b.target));
    let (lo, hi) = values.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y0, y1) = ((lo * 0.7).min(0.5), (hi * 1.5).max(4.0));
    let colours = [
        ("mosquitto", RGBColor(0x3b, 0x6e, 0xc9)),
        ("rumqttd", RGBColor(0xe0, 0x8a, 0x1e)),
        ("rabbitmq", RGBColor(0x2e, 0x9e, 0x5b)),
    ];
    let slot = |peer: &str| colours.iter().position(|(p, _)| *p == peer).unwrap_or(0);
    let width = 1.0 / (colours.len() as f64 + 1.0);

    let root = SVGBackend::new(path, (1400, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Tether's headline ratio to each peer (above 1× Tether does better) — run {}",
                results.run_id
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(120)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups.len().max(1) as f64, (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("ratio (log scale)")
        .y_label_formatter(&|v| format!("{v}×"))
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (groups.len() as f64, 1.0)],
        RGBColor(0x99, 0x99, 0x99).stroke_width(1),
    )))?;
    for (peer, colour) in colours {
        let mine: Vec<(usize, &Bar)> = bars
            .iter()
            .filter(|b| b.peer == peer)
            .filter_map(|b| groups.iter().position(|g| *g == b.case).map(|g| (g, b)))
            .collect();
        let x = |g: usize| g as f64 + width * (0.5 + slot(peer) as f64);
        chart
            .draw_series(mine.iter().filter_map(|(g, b)| {
                b.ratio
                    .map(|r| Rectangle::new([(x(*g), y0), (x(*g) + width, r)], colour.filled()))
            }))?
            .label(peer_name(peer))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        chart.draw_series(mine.iter().filter(|(_, b)| b.run).map(|(g, b)| {
            let (text, y) = match b.ratio {
                Some(r) => (format_ratio(r), r),
                None => ("n/a".to_owned(), y0),
            };
            Text::new(text, (x(*g), y * 1.04), ("sans-serif", 10).into_font())
        }))?;
        chart.draw_series(mine.iter().filter_map(|(g, b)| {
            b.target.map(|t| {
                PathElement::new(
                    vec![(x(*g) - width * 0.15, t), (x(*g) + width * 1.15, t)],
                    BLACK.stroke_width(3),
                )
            })
        }))?;
    }
    chart
        .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
        .label("target")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    let label = ("sans-serif", 13)
        .into_font()
        .transform(FontTransform::Rotate90);
    for (g, name) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, y0));
        root.draw(&Text::new(
            name.to_string(),
            (px + 6, py + 8),
            label.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(received: f64, cpu: f64) -> Outcome {
        Outcome::Report(json!({
            "scenario": "mqtt",
            "rates": {"received": {"messages": 1, "per_second": received}},
            "latencies": {"deliver": {"p50_ms": 0.1, "p99_ms": 0.4, "p999_ms": 1.0}},
            "resources": {"broker_cpu_us_per_message": cpu},
        }))
    }

    fn case(id: &str) -> (&'static Scenario, &'static Case) {
        SCENARIOS
            .iter()
            .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
            .find(|(_, c)| c.id == id)
            .expect("a catalogued case")
    }

    fn fixture() -> Results {
        let mut runs = BTreeMap::new();
        let mut put = |case: &str, peer: &str, o: Outcome| {
            runs.insert((case.to_owned(), peer.to_owned()), o);
        };
        put("s1-16B", "tether", report(300_000.0, 2.0));
        put("s1-16B", "mosquitto", report(100_000.0, 5.0));
        put(
            "s1-16B",
            "rumqttd",
            Outcome::Failed("rumqttd did not start".into()),
        );
        put("s4-wildcard", "tether", report(10_000.0, 4.0));
        put("s4-wildcard", "mosquitto", report(10_000.0, 12.0));
        put("s4-share", "tether", report(10_000.0, 4.0));
        put("s4-share", "rabbitmq", report(0.0, 1.0));
        Results {
            run_id: "fixture".into(),
            meta: json!({
                "invocation": "env BENCH_SCALE=0.01 scripts/bench-compare",
                "machine": {"cpu": "Test CPU", "cpus": 2, "memory_kib": 2097152},
                "runs": [{"case": "s1-16B", "peer": "mosquitto", "broker_command": "mosquitto -c x",
                          "bench_command": "tether-bench --json mqtt", "failure": ""}],
            }),
            runs,
        }
    }

    #[test]
    fn throughput_ratio_is_tether_over_peer() {
        let (_, c) = case("s1-16B");
        assert_eq!(fixture().ratio(c, "mosquitto"), Some(3.0));
    }

    #[test]
    fn cost_ratio_is_peer_over_tether() {
        let (_, c) = case("s4-wildcard");
        assert_eq!(fixture().ratio(c, "mosquitto"), Some(3.0));
    }

    #[test]
    fn a_failed_or_missing_peer_has_no_ratio_and_shows_as_na() {
        let r = fixture();
        let (s, c) = case("s1-16B");
        assert_eq!(r.ratio(c, "rumqttd"), None);
        assert_eq!(r.ratio(c, "rabbitmq"), None);
        let mut md = String::new();
        render_case(&mut md, &r, s, c);
        assert!(
            md.contains("| rumqttd | n/a (rumqttd did not start) |"),
            "{md}"
        );
        assert!(md.contains("| RabbitMQ | n/a (not run) |"), "{md}");
        assert!(
            md.contains("| Mosquitto | 100,000 | 5.0 | 3.00× | ≥ 2.00× | yes |"),
            "{md}"
        );
    }

    #[test]
    fn a_run_that_delivered_nothing_counts_as_failed() {
        let (_, c) = case("s4-share");
        let r = fixture();
        assert_eq!(r.ratio(c, "rabbitmq"), None);
        // The headline of s4 is CPU per message, which a run that delivered
        // nothing still has.
        assert_eq!(
            r.headline(c, "rabbitmq"),
            Err("nothing measured: delivered msg/s was 0".to_owned())
        );
        let (_, s1) = case("s1-16B");
        let mut zero = r.clone();
        zero.runs
            .insert(("s1-16B".into(), "mosquitto".into()), report(0.0, 1.0));
        assert_eq!(
            zero.headline(s1, "mosquitto"),
            Err("nothing measured: delivered msg/s was 0".to_owned())
        );
    }

    #[test]
    fn a_negative_cost_is_a_measurement_error_not_a_ratio() {
        let mut r = fixture();
        r.runs.insert(
            ("s4-wildcard".into(), "mosquitto".into()),
            report(10_000.0, -3.0),
        );
        let (_, c) = case("s4-wildcard");
        assert_eq!(r.ratio(c, "mosquitto"), None);
        assert!(r.headline(c, "mosquitto").unwrap_err().contains("negative"));
    }

    #[test]
    fn amqp_cases_list_only_amqp_peers() {
        let (s, c) = case("s9-amqp-1k");
        let ids: Vec<_> = case_peers(s, c).iter().map(|p| p.id).collect();
        assert_eq!(ids, ["tether", "rabbitmq"]);
        let (s, c) = case("s9-mqtt-1k");
        assert_eq!(case_peers(s, c).len(), 4);
    }

    #[test]
    fn summary_counts_targets_and_findings_are_copied_verbatim() {
        let md = render_markdown(
            &fixture(),
            Some("Profiles show *X*.\n"),
            "bench/benchmarks.svg",
        );
        assert!(
            md.contains("| 1 — 16 B payload | ≥ 2.00× Mosquitto (delivered msg/s) | 3.00× | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| 1 — 16 B payload | ≥ 1.50× rumqttd (delivered msg/s) | n/a | n/a |"),
            "{md}"
        );
        assert!(md.contains("## Findings\n\nProfiles show *X*.\n"), "{md}");
        assert!(
            md.contains("mosquitto -c x\ntether-bench --json mqtt"),
            "{md}"
        );
        assert!(md.contains("| CPU | Test CPU |"), "{md}");
    }

    #[test]
    fn chart_bars_carry_ratio_target_and_whether_they_ran() {
        let bars = bars(&fixture());
        let find = |case: &str, peer: &str| {
            bars.iter()
                .find(|b| b.case == case && b.peer == peer)
                .cloned()
                .unwrap()
        };
        let b = find("s1-16B", "mosquitto");
        assert_eq!((b.ratio, b.target, b.run), (Some(3.0), Some(2.0), true));
        let b = find("s1-16B", "rumqttd");
        assert_eq!((b.ratio, b.target, b.run), (None, Some(1.5), true));
        assert!(!find("s1-16B", "rabbitmq").run);
        assert!(bars.iter().all(|b| b.peer != "tether"));
        assert!(!bars.iter().any(|b| b.case.starts_with("ceiling")));
    }

    #[test]
    fn numbers_print_for_tables() {
        assert_eq!(format_value(1_234_567.4, Unit::Count), "1,234,567");
        assert_eq!(format_value(999.0, Unit::Count), "999");
        assert_eq!(format_value(3072.0, Unit::KiB), "3.00");
        assert_eq!(format_value(0.12345, Unit::Ms), "0.123");
        assert_eq!(format_ratio(25.04), "25.0×");
    }

    #[test]
    fn results_are_read_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("s1-16B--tether.json"),
            json!({"rates": {"received": {"per_second": 10.0}}}).to_string(),
        )
        .unwrap();
        fs::write(dir.join("s1-16B--rumqttd.failed"), "no $share\n").unwrap();
        fs::write(dir.join("s1-16B--rumqttd.log"), "ignored").unwrap();
        fs::write(dir.join("meta.json"), r#"{"run_id": "x"}"#).unwrap();
        let r = Results::read(&dir).unwrap();
        assert_eq!(
            r.outcome("s1-16B", "rumqttd"),
            Outcome::Failed("no $share".into())
        );
        assert!(matches!(r.outcome("s1-16B", "tether"), Outcome::Report(_)));
        assert_eq!(r.outcome("s1-16B", "mosquitto"), Outcome::NotRun);
        assert_eq!(r.meta["run_id"], "x");

        let svg = dir.join("chart.svg");
        render_svg(&fixture(), &svg).unwrap();
        let text = fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{text}");
        assert!(
            text.contains("3.00×") && text.contains("s4-wildcard"),
            "{text}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
