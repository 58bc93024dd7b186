//! Smoke runs of `tether-bench` against a gateway: a second of tiny load per
//! scenario, asserting only that each run produces a well-formed report
//! (counts that add up, percentiles in order, JSON that parses). Performance
//! is measured by hand with the benchmark scripts, never asserted here.

use serde_json::Value;
use tether_bench::cli::Cli;
use tether_bench::report::Report;
use tether_e2e::Gateway;

async fn run(args: &[&str]) -> Report {
    let cli = <Cli as clap::Parser>::try_parse_from(args).expect("arguments parse");
    cli.scenario.run().await.expect("the run succeeds")
}

fn check_well_formed(r: &Report, scenario: &str) -> Value {
    assert_eq!(r.scenario, scenario);
    assert!(r.measured_seconds > 0.5, "{r:?}");
    for (name, l) in &r.latencies {
        assert!(l.count > 0, "no {name} latency samples: {r:?}");
        assert!(
            l.p50_ms <= l.p99_ms && l.p99_ms <= l.p999_ms && l.p999_ms <= l.max_ms,
            "{name} percentiles out of order: {l:?}"
        );
    }
    for (name, rate) in &r.rates {
        let expect = rate.messages as f64 / r.measured_seconds;
        assert!((rate.per_second - expect).abs() < 1e-6, "{name}: {rate:?}");
    }
    let resources: Vec<&str> = r.resources.iter().map(|(k, _)| k.as_str()).collect();
    assert!(resources.contains(&"broker_cpu_seconds"), "{resources:?}");
    assert!(resources.contains(&"bench_cores"), "{resources:?}");
    let table = r.to_table();
    assert!(table.contains(scenario), "{table}");
    serde_json::from_str(&r.to_json()).expect("the JSON report parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_scenario_reports_deliveries_and_latencies() {
    let gw = Gateway::start();
    let addr = gw.mqtt_addr().to_string();
    let pid = gw.pid().expect("running").to_string();
    let r = run(&[
        "tether-bench",
        "mqtt",
        "--addr",
        &addr,
        "--publishers",
        "2",
        "--subscribers",
        "2",
        "--qos",
        "1",
        "--sub-qos",
        "1",
        "--rate",
        "500",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--broker-pid",
        &pid,
    ])
    .await;
    let json = check_well_formed(&r, "mqtt");
    let rate = |name: &str| json["rates"][name]["messages"].as_u64().unwrap();
    // Two publishers at 500/s for a second, each matched by one subscriber.
    assert!(rate("published") > 0 && rate("received") > 0, "{json}");
    let totals = |name: &str| json["totals"][name].as_u64().unwrap();
    assert!(totals("acked") <= totals("published"), "{json}");
    assert!(totals("received") <= totals("published"), "{json}");
    assert!(json["latencies"]["publish ack"]["count"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_durable_scenario_reports_confirms() {
    let gw = Gateway::start();
    let uri = tether_e2e::amqp::uri(gw.amqp.expect("amqp listener"));
    let pid = gw.pid().expect("running").to_string();
    let r = run(&[
        "tether-bench",
        "amqp-durable",
        "--uri",
        &uri,
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--confirm-window",
        "16",
        "--broker-pid",
        &pid,
    ])
    .await;
    let json = check_well_formed(&r, "amqp-durable");
    assert!(
        json["rates"]["confirmed"]["messages"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert_eq!(json["totals"]["nacked"], 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_connections_scenario_reports_the_ramp_and_memory() {
    let gw = Gateway::start();
    let addr = gw.mqtt_addr().to_string();
    let pid = gw.pid().expect("running").to_string();
    let r = run(&[
        "tether-bench",
        "mqtt-connections",
        "--addr",
        &addr,
        "--connections",
        "50",
        "--rate",
        "500",
        "--source-addresses",
        "4",
        "--hold",
        "200ms",
        "--broker-pid",
        &pid,
    ])
    .await;
    assert_eq!(r.scenario, "mqtt-connections");
    let json: Value = serde_json::from_str(&r.to_json()).expect("the JSON report parses");
    assert_eq!(json["totals"]["connected"], 50, "{json}");
    assert_eq!(json["totals"]["refused_or_failed"], 0, "{json}");
    assert_eq!(json["latencies"]["connect"]["count"], 50, "{json}");
    assert!(
        json["resources"]["broker_bytes_per_connection"].is_number(),
        "{json}"
    );
}
