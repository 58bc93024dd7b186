//! Quickstart: one MQTT client subscribes to `demo/#`, another publishes three
//! readings, and the first prints what it receives.
//!
//! Run a gateway (`cargo run --release`), then:
//!
//! ```text
//! cargo run --example quickstart            # against localhost:1883
//! cargo run --example quickstart -- 127.0.0.1:18830
//! ```
//!
//! Look for three `received demo/...` lines.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').ok_or("address must be host:port")?;
    let port: u16 = port.parse()?;

    let (sub, mut sub_loop) = AsyncClient::new(MqttOptions::new("quickstart-sub", host, port), 10);
    sub.subscribe("demo/#", QoS::AtLeastOnce).await?;
    // Wait for the SUBACK before publishing so nothing is missed.
    loop {
        if let Event::Incoming(Incoming::SubAck(_)) = sub_loop.poll().await? {
            break;
        }
    }
    println!("subscribed to demo/#");

    let (publisher, mut pub_loop) =
        AsyncClient::new(MqttOptions::new("quickstart-pub", host, port), 10);
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    for (i, room) in ["kitchen", "hall", "attic"].iter().enumerate() {
        let body = format!("{{\"temperature\":{}}}", 20 + i);
        publisher
            .publish(
                format!("demo/{room}/temperature"),
                QoS::AtLeastOnce,
                false,
                body,
            )
            .await?;
    }

    let mut received = 0;
    while received < 3 {
        match tokio::time::timeout(Duration::from_secs(5), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                received += 1;
                println!(
                    "received {} {}",
                    p.topic,
                    String::from_utf8_lossy(&p.payload)
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err("timed out waiting for messages".into()),
        }
    }
    println!("done: {received} messages went through the gateway");
    Ok(())
}
