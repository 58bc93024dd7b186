//! Device commands: a backend application sends commands over AMQP, each MQTT
//! device receives only its own, and replies; the backend matches every reply
//! to its command. Request/response across two protocols.
//!
//! ```text
//! backend (lapin) ── amq.topic `cmd.device-2`, reply-to `replies.device-2`, correlation-id ──►
//!                                                           device-2 (rumqttc, MQTT 5) on `cmd/device-2`
//! backend ◄── queue bound to `replies.*` ◄── `replies/device-2` with the same correlation data ──┘
//! ```
//!
//! The gateway translates on the way (see the README, "How MQTT topics meet
//! AMQP routing keys"): routing key `cmd.device-2` is MQTT topic
//! `cmd/device-2`, AMQP `reply-to` becomes the MQTT 5 Response Topic, and
//! `correlation-id` becomes Correlation Data — and back again for the reply.
//!
//! Who may hear what is the gateway's job, not the devices' good manners:
//! devices log in as the user `device`, and the ACL lets a device subscribe
//! to `cmd/%c` and publish to `replies/%c` only, where `%c` is its own client
//! id (like `${iot:ClientId}` in an AWS IoT policy). A device that tries to
//! listen to everyone's commands is refused.
//!
//! # Run it
//!
//! Against a gateway started with the README's first command:
//!
//! ```text
//! cargo run --release                                      # the gateway
//! cargo run --example device-commands
//! cargo run --example device-commands -- --devices 5 --commands 4
//! ```
//!
//! The example installs the `device` user and its ACL rules itself, through
//! the gateway's admin API (`PUT /api/users/device`, then `PUT /api/acl` with
//! the four device rules put in front of the rules already there — or, on a
//! gateway without rules, followed by one that keeps allowing every other
//! client everything). It logs in as `guest`/`guest`, which the gateway
//! accepts from the same machine while no administrator is configured. The
//! user and the rules stay afterwards (`tether admin users`, `tether admin
//! acl`); running the example again changes nothing.
//!
//! Flags (`--help` lists them): `--mqtt` (or `MQTT_ADDR`, default
//! `127.0.0.1:1883`), `--amqp` (or `AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), `--endpoint` (or
//! `TETHER_ADMIN_URL`, default `http://127.0.0.1:9324`, the admin API),
//! `--admin-user` / `--admin-password` (or `TETHER_ADMIN_USER` /
//! `TETHER_ADMIN_PASSWORD`), `--devices`, `--commands` (per device),
//! `--password` (or `DEVICE_PASSWORD`, default `device-secret`: the password
//! the example gives the `device` user — an example, never use it for
//! anything real).
//!
//! # What to look for
//!
//! * `device-1 may not subscribe to cmd/+ … refused`: the ACL at work.
//! * `device-N: got …` lines: each device only ever sees `cmd/device-N`.
//! * `backend: device-N answered cmd-K …`: the reply carried the command's
//!   correlation id back, and came from the device the command was sent to.
//! * The final `done:` line: every command answered, by the right device.
//! * If the admin API refuses the credential (a gateway with its own
//!   administrators), the example says so in one line.

use std::collections::HashMap;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

type BoxError = Box<dyn Error + Send + Sync>;

/// What the backend can ask a device to do.
const COMMANDS: [&str; 4] = ["read-temperature", "open-valve", "close-valve", "reboot"];

#[derive(Parser)]
#[command(about = "AMQP backend commands MQTT devices; replies matched by correlation id")]
struct Args {
    /// The gateway's MQTT listener.
    #[arg(long, env = "MQTT_ADDR", default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// The gateway's AMQP URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: String,
    /// How many devices.
    #[arg(long, default_value_t = 3)]
    devices: u32,
    /// Commands the backend sends to each device.
    #[arg(long, default_value_t = 2)]
    commands: u32,
    /// The password the example gives the `device` user.
    #[arg(long, env = "DEVICE_PASSWORD", default_value = "device-secret")]
    password: String,
    /// The gateway's HTTP listener (its admin API).
    #[arg(
        long,
        env = "TETHER_ADMIN_URL",
        default_value = "http://127.0.0.1:9324"
    )]
    endpoint: String,
    /// An administrator of the gateway (guest works from the same machine
    /// while no administrator is configured).
    #[arg(long, env = "TETHER_ADMIN_USER", default_value = "guest")]
    admin_user: String,
    /// That administrator's password.
    #[arg(long, env = "TETHER_ADMIN_PASSWORD", default_value = "guest")]
    admin_password: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors end the example with one line saying what went wrong.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device-commands: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let (host, port) = args
        .mqtt
        .rsplit_once(':')
        .ok_or("--mqtt must be host:port")?;
    let port: u16 = port.parse().map_err(|_| "--mqtt: bad port")?;

    // Who may hear what: the `device` user and its ACL rules.
    install_device_access(&args).await?;

    // The devices. Each tells us when it is subscribed; `stop` ends them.
    let (ready_tx, mut ready) = mpsc::channel(16);
    let (stop_tx, stop) = watch::channel(false);
    let mut devices = tokio::task::JoinSet::new();
    for n in 1..=args.devices {
        let mut options = MqttOptions::new(format!("device-{n}"), host, port);
        options.set_credentials("device", &args.password);
        options.set_keep_alive(Duration::from_secs(30));
        devices.spawn(device(options, n == 1, ready_tx.clone(), stop.clone()));
    }
    drop(ready_tx);
    for _ in 0..args.devices {
        tokio::select! {
            Some(()) = ready.recv() => {}
            // A device that fails before it is ready ends the example with its reason.
            Some(done) = devices.join_next() => {
                done??;
                return Err("a device stopped before it was ready".into());
            }
        }
    }

    // The backend: an AMQP application that has never heard of MQTT.
    let conn = Connection::connect(&args.amqp, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.amqp))?;
    let channel = conn.create_channel().await?;
    // A private, server-named queue for the replies of every device.
    let replies_queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            replies_queue.name().clone(),
            "amq.topic".into(),
            "replies.*".into(), // MQTT `replies/+`
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut replies = channel
        .basic_consume(
            replies_queue.name().clone(),
            "backend".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;

    // Send every command, remembering what is pending under its correlation id.
    let mut pending: HashMap<String, (String, &str, Instant)> = HashMap::new();
    let mut k = 0;
    for round in 0..args.commands {
        for n in 1..=args.devices {
            k += 1;
            let device = format!("device-{n}");
            let command = COMMANDS[(round as usize + n as usize) % COMMANDS.len()];
            let correlation_id = format!("cmd-{k}");
            println!("backend: sending {correlation_id} `{command}` to {device}");
            channel
                .basic_publish(
                    "amq.topic".into(),
                    format!("cmd.{device}").as_str().into(),
                    BasicPublishOptions::default(),
                    serde_json::json!({ "command": command })
                        .to_string()
                        .as_bytes(),
                    BasicProperties::default()
                        .with_reply_to(format!("replies.{device}").as_str().into())
                        .with_correlation_id(correlation_id.as_str().into())
                        .with_content_type("application/json".into())
                        // Persistent: MQTT devices get it at QoS 1.
                        .with_delivery_mode(2),
                )
                .await?;
            pending.insert(correlation_id, (device, command, Instant::now()));
        }
    }

    // Match the replies to the commands.
    let total = pending.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            let mut missing: Vec<_> = pending.keys().cloned().collect();
            missing.sort();
            return Err(format!("no reply to {} within 10 s", missing.join(", ")).into());
        };
        let reply = reply?;
        let correlation_id = reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .ok_or("a reply without a correlation id")?;
        let Some((device, command, sent_at)) = pending.remove(&correlation_id) else {
            println!("backend: ignoring a reply to unknown command {correlation_id}");
            continue;
        };
        // The routing key says which device published it (`replies.device-2`);
        // the ACL guarantees a device can only publish under its own id.
        let from = reply.routing_key.as_str().trim_start_matches("replies.");
        if from != device {
            return Err(
                format!("{correlation_id} was sent to {device} but {from} answered").into(),
            );
        }
        let body: serde_json::Value = serde_json::from_slice(&reply.data)?;
        println!(
            "backend: {device} answered {correlation_id} (`{command}`): {} after {} ms",
            body["status"].as_str().unwrap_or("?"),
            sent_at.elapsed().as_millis()
        );
    }
    println!("done: all {total} commands answered, each by the device it was sent to");

    // Stop the devices and make sure none of them saw a foreign command.
    let _ = stop_tx.send(true);
    while let Some(done) = devices.join_next().await {
        done??;
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}

/// One device: logs in, (for `nosy`) tries to listen to every device's
/// commands and checks that this is refused, subscribes to its own commands,
/// and answers each one on the response topic with the correlation data.
async fn device(
    options: MqttOptions,
    nosy: bool,
    ready: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let id = options.client_id();
    let own = format!("cmd/{id}");
    let (client, mut events) = AsyncClient::new(options, 10);
    wait_connected(&id, &mut events).await?;

    if nosy {
        client.subscribe("cmd/+", QoS::AtLeastOnce).await?;
        match suback(&mut events).await? {
            SubscribeReasonCode::Success(_) => {
                return Err(format!(
                    "{id} was allowed to subscribe to cmd/+ (everyone's commands): an ACL rule \
                     before the example's lets devices read every topic (see `tether admin acl`)"
                )
                .into());
            }
            refused => println!(
                "{id} may not subscribe to cmd/+ (everyone's commands): refused, {refused:?}"
            ),
        }
    }
    client.subscribe(own.as_str(), QoS::AtLeastOnce).await?;
    match suback(&mut events).await? {
        SubscribeReasonCode::Success(_) => println!("{id}: listening on {own}"),
        refused => return Err(format!("{id} may not subscribe to {own}: {refused:?}").into()),
    }
    ready.send(()).await?;

    loop {
        let event = tokio::select! {
            event = events.poll() => event?,
            _ = stop.changed() => break,
        };
        let Event::Incoming(Packet::Publish(command)) = event else {
            continue;
        };
        let topic = String::from_utf8_lossy(&command.topic).into_owned();
        if topic != own {
            return Err(format!("{id} received a command meant for someone else: {topic}").into());
        }
        let body: serde_json::Value = serde_json::from_slice(&command.payload)?;
        let props = command.properties.unwrap_or_default();
        let (Some(response_topic), Some(correlation)) =
            (props.response_topic, props.correlation_data)
        else {
            println!("{id}: a command without a response topic; nothing to answer");
            continue;
        };
        let name = body["command"].as_str().unwrap_or("?");
        println!(
            "{id}: got `{name}` (correlation {}), answering on {response_topic}",
            String::from_utf8_lossy(&correlation)
        );
        let answer = serde_json::json!({ "device": id, "command": name, "status": "done" });
        client
            .publish_with_properties(
                response_topic,
                QoS::AtLeastOnce,
                false,
                answer.to_string(),
                PublishProperties {
                    correlation_data: Some(correlation),
                    content_type: Some("application/json".into()),
                    ..PublishProperties::default()
                },
            )
            .await?;
    }
    client.disconnect().await?;
    Ok(())
}

/// The ACL rules the example needs, in the admin API's JSON shape: a device
/// hears only its own commands and answers only as itself.
fn device_rules() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!({"user": "device", "action": "subscribe", "topic": "cmd/%c", "effect": "allow"}),
        json!({"user": "device", "action": "publish", "topic": "replies/%c", "effect": "allow"}),
        json!({"user": "device", "action": "publish", "topic": "sensors/%c/telemetry", "effect": "allow"}),
        // Anything else a device tries is refused (the first matching rule decides).
        json!({"user": "device", "action": "all", "topic": "#", "effect": "deny"}),
    ]
}

/// Creates (or updates) the `device` user and puts the device rules in front
/// of the gateway's ACL, through the admin API.
async fn install_device_access(args: &Args) -> Result<(), BoxError> {
    use serde_json::{Value, json};
    let api = format!("{}/api", args.endpoint.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let url = format!("{api}{path}");
        let mut request = http
            .request(method, &url)
            .basic_auth(&args.admin_user, Some(&args.admin_password));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        async move {
            let response = request
                .send()
                .await
                .map_err(|e| format!("cannot reach the gateway's admin API at {url}: {e}"))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(format!(
                    "the admin API refused the credential of `{}`: pass an administrator with \
                     --admin-user and --admin-password (TETHER_ADMIN_USER, TETHER_ADMIN_PASSWORD)",
                    args.admin_user
                ));
            }
            if !status.is_success() {
                return Err(format!("{url}: HTTP {status}: {text}"));
            }
            Ok::<String, String>(text)
        }
    };

    call(
        reqwest::Method::PUT,
        "/users/device",
        Some(json!({ "password": args.password })),
    )
    .await?;
    let acl: Value = serde_json::from_str(&call(reqwest::Method::GET, "/acl", None).await?)?;
    let mut rules = acl["rules"].as_array().cloned().unwrap_or_default();
    let ours = device_rules();
    let is_ours = |r: &Value| {
        ours.iter().any(|o| {
            ["user", "action", "topic", "effect"]
                .iter()
                .all(|k| r.get(*k) == o.get(*k))
                && r.get("client_id").is_none_or(Value::is_null)
        })
    };
    if rules.iter().filter(|r| is_ours(r)).count() == ours.len() {
        println!("the `device` user and its ACL rules are in place");
        return Ok(());
    }
    if rules.is_empty() {
        // No rules meant "everything allowed": keep it so for everyone else.
        rules.push(json!({"action": "all", "topic": "#", "effect": "allow"}));
    }
    let mut all = ours;
    all.extend(rules);
    call(
        reqwest::Method::PUT,
        "/acl",
        Some(json!({ "rules": all, "default": acl["default"] })),
    )
    .await?;
    println!(
        "installed the `device` user and its ACL rules (subscribe cmd/%c, publish replies/%c)"
    );
    Ok(())
}

/// Polls until CONNACK; a refused login becomes a one-line explanation.
async fn wait_connected(id: &str, events: &mut EventLoop) -> Result<(), BoxError> {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => {
                return Err(format!(
                    "{id}: the gateway refused the `device` login ({code:?}) although the example \
                     installed that user"
                )
                .into());
            }
            Err(e) => return Err(format!("{id}: cannot connect: {e}").into()),
        }
    }
}

/// Polls until the next SUBACK and returns its (single) reason code.
async fn suback(events: &mut EventLoop) -> Result<SubscribeReasonCode, BoxError> {
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await? {
            return ack
                .return_codes
                .first()
                .copied()
                .ok_or_else(|| "an empty SUBACK".into());
        }
    }
}
