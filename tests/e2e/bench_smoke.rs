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

/// Runs `scenario` with `args` for a second after a short warm-up, reading
/// the CPU of `broker_pid`, and checks the report is well formed.
async fn smoke(scenario: &str, args: &[&str], broker_pid: &str) -> Value {
    let mut all = vec!["tether-bench", scenario];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--broker-pid",
        broker_pid,
    ]);
    check_well_formed(&run(&all).await, scenario)
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
    let json = smoke(
        "mqtt",
        &[
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
        ],
        &pid,
    )
    .await;
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

/// A count from the report's JSON (`section` is `rates` or `totals`).
fn count(json: &Value, section: &str, name: &str) -> u64 {
    let v = match section {
        "rates" => &json["rates"][name]["messages"],
        _ => &json[section][name],
    };
    v.as_u64()
        .unwrap_or_else(|| panic!("no {section}.{name}: {json}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_transient_autoack_scenario_reports_deliveries() {
    let gw = Gateway::start();
    let uri = tether_e2e::amqp::uri(gw.amqp.expect("amqp listener"));
    let pid = gw.pid().expect("running").to_string();
    let json = smoke(
        "amqp",
        &["--uri", &uri, "--autoack", "--rate", "2000"],
        &pid,
    )
    .await;
    assert!(count(&json, "rates", "published") > 0, "{json}");
    assert!(count(&json, "rates", "received") > 0, "{json}");
    assert!(
        count(&json, "totals", "received") <= count(&json, "totals", "published"),
        "{json}"
    );
    assert!(json["rates"].get("confirmed").is_none(), "{json}");
    assert!(json["latencies"]["deliver"]["count"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_persistent_scenario_reports_confirms() {
    let gw = Gateway::start();
    let uri = tether_e2e::amqp::uri(gw.amqp.expect("amqp listener"));
    let pid = gw.pid().expect("running").to_string();
    let json = smoke(
        "amqp",
        &[
            "--uri",
            &uri,
            "--persistent",
            "--confirm-window",
            "32",
            "--prefetch",
            "32",
            "--size",
            "1024",
            "--rate",
            "1000",
        ],
        &pid,
    )
    .await;
    let total = |name| count(&json, "totals", name);
    assert!(count(&json, "rates", "confirmed") > 0, "{json}");
    assert!(count(&json, "rates", "received") > 0, "{json}");
    assert_eq!(total("nacked"), 0, "{json}");
    assert!(total("confirmed") <= total("published"), "{json}");
    assert!(total("received") <= total("published"), "{json}");
    assert!(json["latencies"]["confirm"]["count"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_amqp_scenario_delivers_mqtt_publishes_to_amqp_consumers() {
    let gw = Gateway::start();
    let mqtt = gw.mqtt_addr().to_string();
    let uri = tether_e2e::amqp::uri(gw.amqp.expect("amqp listener"));
    let pid = gw.pid().expect("running").to_string();
    let json = smoke(
        "mqtt-amqp",
        &[
            "--mqtt-addr",
            &mqtt,
            "--amqp-uri",
            &uri,
            "--publishers",
            "2",
            "--qos",
            "1",
            "--rate",
            "500",
        ],
        &pid,
    )
    .await;
    let total = |name| count(&json, "totals", name);
    assert!(count(&json, "rates", "received") > 0, "{json}");
    assert!(total("acked") <= total("published"), "{json}");
    assert!(total("received") <= total("published"), "{json}");
    assert_eq!(json["parameters"]["binding_key"], "bench.#", "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_acknowledges_every_mqtt_and_amqp_publish() {
    use tether_bench::sink::Sink;
    let any = Some("127.0.0.1:0".parse().unwrap());
    let sink = Sink::bind(any, any).await.expect("the sink binds");
    let (mqtt, amqp) = (sink.mqtt_addr().unwrap(), sink.amqp_addr().unwrap());
    let counters = sink.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(sink.serve(async {
        let _ = stopped.await;
    }));
    // The sink runs in this process: it is the "broker" whose CPU is read.
    let pid = std::process::id().to_string();

    let mj = smoke(
        "mqtt",
        &[
            "--addr",
            &mqtt.to_string(),
            "--subscribers",
            "0",
            "--qos",
            "1",
        ],
        &pid,
    )
    .await;
    let aj = smoke(
        "amqp",
        &[
            "--uri",
            &format!("amqp://{amqp}/%2f"),
            "--consumers",
            "0",
            "--confirm-window",
            "64",
        ],
        &pid,
    )
    .await;
    let _ = stop.send(());
    let report = serving.await.expect("the sink stops");

    // Every publish was answered (the runs wait for their last acks).
    assert!(count(&mj, "rates", "published") > 0, "{mj}");
    assert_eq!(
        count(&mj, "totals", "acked"),
        count(&mj, "totals", "published"),
        "{mj}"
    );
    assert!(count(&aj, "rates", "published") > 0, "{aj}");
    assert_eq!(
        count(&aj, "totals", "confirmed"),
        count(&aj, "totals", "published"),
        "{aj}"
    );
    // ... and counted by the sink.
    let sj: Value = serde_json::from_str(&report.to_json()).expect("the sink's report parses");
    assert_eq!(report.scenario, "sink");
    assert!(
        counters.mqtt_publishes.get() >= count(&mj, "totals", "acked"),
        "{sj}"
    );
    assert!(
        counters.amqp_publishes.get() >= count(&aj, "totals", "confirmed"),
        "{sj}"
    );
    assert_eq!(count(&sj, "totals", "mqtt_connections"), 1, "{sj}");
    // The amqp run's setup connection and its producer.
    assert_eq!(count(&sj, "totals", "amqp_connections"), 2, "{sj}");
}
