//! MQTT over WebSocket end to end: rumqttc's WebSocket transport (as browser
//! dashboards with MQTT.js use it: path `/mqtt`, subprotocol `mqtt`), plain
//! and with TLS; a raw tungstenite client for frame boundaries; raw HTTP for
//! refused upgrades.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rumqttc::{TlsConfiguration, Transport};
use tether_e2e::Gateway;
use tether_e2e::mqtt::{WAIT, v4};
use tether_e2e::tls::{self, ALL_VERSIONS, Ca, ServerFiles};
use tether_protocols::mqtt::{self, Packet, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn ws_gateway() -> Gateway {
    Gateway::builder()
        .env("TETHER_MQTT__WS_LISTEN", "127.0.0.1:0")
        .start()
}

fn ws_addr(gw: &Gateway) -> std::net::SocketAddr {
    gw.addr("ws").expect("ws listener logged")
}

#[tokio::test]
async fn rumqttc_over_websocket_reaches_tcp_subscribers() {
    let gw = ws_gateway();
    let addr = ws_addr(&gw);
    let mut tcp_opts = v4::options(gw.mqtt_addr(), "tcp-sub");
    tcp_opts.set_max_packet_size(1 << 20, 1 << 20);
    let mut tcp = v4::Client::connect(tcp_opts).await;
    tcp.subscribe("dash/#", v4::QoS::AtLeastOnce).await;
    let mut o = v4::MqttOptions::new("browser", format!("ws://{addr}/mqtt"), addr.port());
    o.set_transport(Transport::Ws);
    o.set_max_packet_size(1 << 20, 1 << 20);
    // rumqttc checks that the answer names the `mqtt` subprotocol it offered.
    let mut browser = v4::Client::connect(o).await;
    browser.subscribe("dash/#", v4::QoS::AtLeastOnce).await;
    browser.publish_acked("dash/from-browser", "hello").await;
    assert_eq!(&tcp.expect().await.payload[..], b"hello");
    assert_eq!(&browser.expect().await.payload[..], b"hello");
    // And back: a message larger than a read or write chunk arrives whole.
    let big = vec![b'x'; 200_000];
    tcp.publish_acked("dash/to-browser", big.clone()).await;
    let got = browser.expect().await;
    assert_eq!(
        (&got.topic[..], got.payload.len()),
        ("dash/to-browser", big.len())
    );
}

#[tokio::test]
async fn rumqttc_over_secure_websocket_uses_the_certificate_identity() {
    let ca = Ca::new("wss CA");
    let files = ServerFiles::write(&ca.server(), Some(&ca));
    let mut builder = Gateway::builder()
        .env("TETHER_MQTT__WSS_LISTEN", "127.0.0.1:0")
        .env("TETHER_TLS__USE_IDENTITY_AS_USERNAME", "true")
        .config(
            "[auth]\nallow_anonymous = false\nacl_default = \"deny\"\n\
             [[auth.acl]]\naction = \"all\"\ntopic = \"panels/%u/#\"\n",
        );
    for (k, v) in files.env() {
        builder = builder.env(k, v);
    }
    let gw = builder.start();
    let addr = gw.addr("wss").expect("wss listener logged");
    let cert = ca.client("panel-4");
    let config = tls::client_config(&ca, Some(&cert), ALL_VERSIONS);
    let mut o = v4::MqttOptions::new("panel", format!("wss://{addr}/mqtt"), addr.port());
    o.set_transport(Transport::Wss(TlsConfiguration::Rustls(config)));
    let mut panel = v4::Client::connect(o).await;
    let granted = panel
        .subscribe("panels/panel-4/#", v4::QoS::AtLeastOnce)
        .await;
    assert_eq!(
        granted,
        [rumqttc::SubscribeReasonCode::Success(v4::QoS::AtLeastOnce)]
    );
    let refused = panel
        .subscribe("panels/panel-5/#", v4::QoS::AtLeastOnce)
        .await;
    assert_eq!(refused, [rumqttc::SubscribeReasonCode::Failure]);
    panel.publish_acked("panels/panel-4/state", "ready").await;
    assert_eq!(&panel.expect().await.payload[..], b"ready");
}

/// Sends an upgrade request for `path` offering `protocols`; the status line.
async fn upgrade_status(addr: std::net::SocketAddr, path: &str, protocols: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn upgrade_on_another_path_gets_404() {
    let gw = ws_gateway();
    let status = upgrade_status(ws_addr(&gw), "/other", "mqtt").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[tokio::test]
async fn upgrade_offering_only_other_subprotocols_gets_400() {
    let gw = ws_gateway();
    let status = upgrade_status(ws_addr(&gw), "/mqtt", "chat, wamp").await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    let status = upgrade_status(ws_addr(&gw), "/mqtt", "chat, mqtt").await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw WebSocket client on `/mqtt` offering `mqtt`.
async fn raw_ws(gw: &Gateway) -> Ws {
    let addr = ws_addr(gw);
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // tungstenite refuses an answer without the subprotocol it offered.
    let (ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket upgrade");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "mqtt"
    );
    ws
}

/// Reads binary frames until a whole packet of `kind` arrives; the packets
/// before it are skipped.
async fn expect_packet(ws: &mut Ws, buf: &mut Vec<u8>, kind: u8) -> Vec<u8> {
    loop {
        while let Ok(Some(total)) = mqtt::frame_len(buf, 1 << 20) {
            if buf.len() < total {
                break;
            }
            let packet: Vec<u8> = buf.drain(..total).collect();
            if packet[0] >> 4 == kind {
                return packet;
            }
        }
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => buf.extend_from_slice(&data),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn mqtt_packets_may_span_frames_and_share_them() {
    let gw = ws_gateway();
    let mut ws = raw_ws(&gw).await;
    // CONNECT (v3.1.1, client id "a") split over two frames.
    let connect: &[u8] = &[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a',
    ];
    ws.send(Message::binary(connect[..5].to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(connect[5..].to_vec()))
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(expect_packet(&mut ws, &mut buf, 2).await, [0x20, 2, 0, 0]);
    // SUBSCRIBE a/b and a PUBLISH to it in one frame.
    let mut frame = vec![0x82, 8, 0, 1, 0, 3, b'a', b'/', b'b', 0];
    frame.extend_from_slice(&[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
    ws.send(Message::binary(frame)).await.unwrap();
    assert_eq!(
        expect_packet(&mut ws, &mut buf, 9).await,
        [0x90, 3, 0, 1, 0]
    );
    let publish = expect_packet(&mut ws, &mut buf, 3).await;
    match mqtt::decode(&publish, ProtocolVersion::V3_1_1, 1 << 20) {
        Ok((Packet::Publish(p), _)) => assert_eq!((p.topic, p.payload), ("a/b", &b"hi"[..])),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn text_frame_closes_the_connection() {
    let gw = ws_gateway();
    let mut ws = raw_ws(&gw).await;
    let connect: &[u8] = &[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a',
    ];
    ws.send(Message::binary(connect.to_vec())).await.unwrap();
    let mut buf = Vec::new();
    expect_packet(&mut ws, &mut buf, 2).await;
    ws.send(Message::text("not MQTT")).await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection stayed open after a text frame");
    // The gateway is fine: a new client connects.
    let _ = tokio::time::timeout(Duration::from_secs(1), raw_ws(&gw))
        .await
        .expect("reconnect");
}
