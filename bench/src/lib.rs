//! `tether-bench`: the load generator for Tether and for the brokers it
//! replaces.
//!
//! Every scenario speaks a standard protocol to a URI, so the same run measures
//! Tether, RabbitMQ or any other broker on the same machine. The map:
//!
//! * [`cli`]: the command line, one subcommand per scenario, and the options
//!   every scenario shares (duration, warm-up).
//! * [`scenarios`]: one module per scenario. A scenario opens its connections,
//!   drives load on a [`timeline::Timeline`], and returns a [`report::Report`].
//! * [`timeline`]: warm-up, then the measured window, then stop; and the
//!   [`timeline::Meter`]s whose values are read at the window's edges.
//! * [`latency`]: HdrHistogram recording and the percentiles reported.
//! * [`mqtt`]: the lean MQTT client the MQTT scenarios drive load with.
//! * [`probe`]: CPU and memory of the broker and of the load generator.
//! * [`report`]: the result of a run, printed as a table or as JSON.
//!
//! A scenario never prints: it returns numbers, and `main` decides the format.

#![deny(missing_docs)]

pub mod amqp;
pub mod cli;
pub mod latency;
pub mod mqtt;
pub mod net;
pub mod probe;
pub mod report;
pub mod scenarios;
pub mod sink;
pub mod timeline;

/// Why a run failed (connection refused, channel closed by the broker, ...).
pub type Error = Box<dyn std::error::Error + Send + Sync>;
