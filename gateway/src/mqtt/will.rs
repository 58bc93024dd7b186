//! The will message: captured at CONNECT (sharing the CONNECT frame's bytes),
//! published when the connection ends abnormally, possibly after a delay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_protocols::mqtt::Will;

use super::inbound::{message_properties, publish_message};
use crate::auth::ClientAcl;
use crate::core::Core;
use crate::core::bytestr::ByteStr;
use crate::core::exchange::RouteScratch;
use crate::core::message::{KeyForm, Message, MessageProperties, now_ms};

/// A will, ready to publish.
#[derive(Debug)]
pub(super) struct WillSpec {
    topic: ByteStr,
    payload: Bytes,
    qos: u8,
    retain: bool,
    props: Option<Box<MessageProperties>>,
    expiry_secs: Option<u32>,
    /// MQTT 5 Will Delay Interval.
    pub delay: Duration,
}

impl WillSpec {
    /// Captures the will of a CONNECT decoded from `frame`.
    pub fn from_connect(w: &Will<'_>, frame: &Bytes) -> Self {
        WillSpec {
            topic: ByteStr::slice_of(frame, w.topic),
            payload: frame.slice_ref(w.payload),
            qos: w.qos as u8,
            retain: w.retain,
            props: message_properties(&w.properties, frame),
            expiry_secs: w.properties.message_expiry_interval,
            delay: Duration::from_secs(w.properties.will_delay_interval.unwrap_or(0).into()),
        }
    }

    /// Publishes the will as the client would have, subject to its ACL.
    pub fn publish(self, core: &Arc<Core>, origin: u64, acl: &ClientAcl, client_id: &str) {
        if !acl.may_publish(&self.topic) {
            tracing::info!(topic = %self.topic, "will not published: not authorized");
            return;
        }
        let msg = Arc::new(Message {
            id: core.ids.next(),
            routing_key: self.topic,
            key_form: KeyForm::Mqtt,
            exchange: ByteStr::from_static("amq.topic"),
            payload: self.payload,
            qos: self.qos,
            retain: self.retain,
            persistent: self.qos > 0,
            priority: 0,
            published_at_ms: now_ms(),
            expires_at: self
                .expiry_secs
                .map(|s| Instant::now() + Duration::from_secs(s.into())),
            origin,
            props: self.props,
        });
        let mut scratch = RouteScratch::default();
        publish_message(core, &msg, &mut scratch, client_id);
    }
}
