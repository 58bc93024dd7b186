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
//! * [`timeline`]: warm-up, then the measured window, then stop; the
//!   [`timeline::Meter`]s whose values are read at the window's edges; the
//!   [`timeline::Pacer`] of fixed-rate senders.
//! * [`latency`]: send-time stamps in payloads, HdrHistogram recording and
//!   the percentiles reported.
//! * [`mqtt`] and [`amqp`]: the lean MQTT and AMQP 0-9-1 clients the
//!   scenarios drive load with (one task, one read and one write buffer per
//!   connection; [`net`] holds their shared socket helpers).
//! * [`sink`]: a null-sink MQTT and AMQP broker, so a run against it shows
//!   the load generator's own ceiling.
//! * [`probe`]: CPU and memory of the broker and of the load generator.
//! * [`report`]: the result of a run, printed as a table or as JSON.
//!
//! A scenario never prints: it returns numbers, and `main` decides the format
//! (the sink alone prints one line once listening, for scripts to wait on).

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
