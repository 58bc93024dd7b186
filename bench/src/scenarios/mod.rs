//! One module per scenario.
//!
//! A scenario has an `Args` struct (its subcommand's options, flattening
//! [`RunArgs`](crate::cli::RunArgs)) and an async `run(Args) -> Result<Report>`.
//! To add one: write the module, add a variant to
//! [`Scenario`](crate::cli::Scenario) and a line to its `run`.

pub mod amqp;
pub mod amqp_durable;
pub mod mqtt;
pub mod mqtt_amqp;
pub mod mqtt_connections;
