//! One module per scenario.
//!
//! A scenario has an `Args` struct (its subcommand's options, flattening
//! [`RunArgs`](crate::cli::RunArgs)) and an async `run(Args) -> Result<Report>`.
//! To add one: write the module, add a variant to
//! [`Scenario`](crate::cli::Scenario) and a line to its `run`.
//!
//! [`amqp`] with `--persistent --confirm-window 256 --prefetch 256 --size
//! 1024` is the durable-publish benchmark on the lean client;
//! [`amqp_durable`] stays for the storage comparison (`scripts/bench-storage`):
//! it drives lapin, a general-purpose client, with incompressible bodies, an
//! `x-queue-type` of choice and a queue that can be kept after the run.

pub mod amqp;
pub mod amqp_durable;
pub mod mqtt;
pub mod mqtt_amqp;
pub mod mqtt_connections;
