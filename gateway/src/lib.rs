//! Tether: an IoT protocol gateway where MQTT devices, AMQP 0-9-1 applications
//! and SQS/SNS API clients meet on one pub/sub core.
//!
//! The map, room by room:
//!
//! * [`config`]: layered configuration (defaults < TOML < `TETHER_*` env).
//! * [`server`]: binds the listeners, runs the front ends, shuts down cleanly;
//!   [`listener`] is the accept loop they share.
//! * [`core`]: the one router and its queues with SQS-style leases; sessions
//!   and retained messages. Every protocol's messages take the same path here.
//! * [`mqtt`]: the MQTT 3.1.1/5.0 front end (one task per connection).
//! * [`amqp`]: the AMQP 0-9-1 front end (RabbitMQ clients run unchanged).
//! * [`http`]: the HTTP listener: the SQS/SNS APIs, health, metrics, the admin
//!   API and the web dashboard.
//! * [`bridge`]: bridges to upstream brokers (AWS IoT Core, RabbitMQ, ...):
//!   a durable outbox queue per bridge drained by an upstream client, and
//!   upstream messages published into the core like a local client's.
//! * [`auth`]: users and ACLs shared by every front end (changeable at runtime).
//! * [`definitions`]: exchanges, queues, topics, subscriptions, rules, users
//!   and ACLs as one document: validated, applied at start-up and over the
//!   admin API, exported from a running gateway.
//! * [`registry`]: live client connections, for the admin API to list and close.
//! * [`admin_cli`]: `tether admin ...`, the command line over the admin API.
//! * [`metrics`]: Prometheus metrics, readiness, refused-connection logging.
//! * [`store`]: durable state behind the `Store` trait (embedded fjall store,
//!   group commit, recovery).
//! * [`transport`]: the streams connections run over (TCP, TLS, WebSocket),
//!   certificates and their reload, client certificate identity.
//!
//! Protocol codecs live in the `tether-protocols` crate, sans-IO and `no_std`.

pub mod admin_cli;
pub mod amqp;
pub mod auth;
pub mod bridge;
pub mod config;
pub mod core;
pub mod definitions;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod mqtt;
pub mod registry;
pub mod server;
pub mod store;
pub mod transport;
