//! End-to-end tests against a running `tether` process, one module per area.

mod amqp_basic;
mod amqp_basic_ops;
mod amqp_confirms_tx;
mod amqp_connection;
mod amqp_malformed;
mod amqp_pika;
mod amqp_topology;
mod bench_smoke;
mod crash;
mod cross_protocol;
mod durability;
mod durability_api;
mod examples;
mod firmware;
mod mqtt_malformed;
mod mqtt_mosquitto;
mod mqtt_v4;
mod mqtt_v5;
mod rules;
mod sns_api;
mod sqs_api;
mod sqs_basic;
mod sqs_cross_protocol;
mod sqs_query;
mod sqs_semantics;
mod startup;
