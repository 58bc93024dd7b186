//! End-to-end tests against a running `tether` process, one module per area.

mod amqp_basic;
mod mqtt_malformed;
mod mqtt_mosquitto;
mod mqtt_v4;
mod mqtt_v5;
mod sqs_basic;
mod startup;
