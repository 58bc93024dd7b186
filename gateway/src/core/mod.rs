//! The pub/sub core: the one place where every protocol's messages meet.
//!
//! * [`message`]: the immutable, shared [`Message`](message::Message).
//! * [`exchange`] and [`topic_trie`]: exchanges, bindings and routing.
//! * [`queue`]: queues with leases, limits and consumer wake-ups.
//! * [`vhost`]: namespaces of exchanges and queues; the publish entry point.
//! * [`session`]: MQTT sessions that outlive connections, and shared groups.
//! * [`retained`]: retained messages by topic.
//! * [`pager`]: drops stored message bodies from memory under pressure.
//!
//! Front ends translate their protocol into calls on these types from their own
//! connection tasks. Nothing here knows about sockets.

pub mod bytestr;
pub mod dead_letter;
pub mod exchange;
pub mod message;
pub mod pager;
pub mod props;
pub mod queue;
pub mod retained;
pub mod rules;
pub mod scheduler;
pub mod session;
pub mod topic_trie;
pub mod vhost;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::auth::Authenticator;
use crate::config::{Config, OverflowPolicy};
use crate::store::recovery::{MetaRecord, Recovered};
use crate::store::{SharedStore, StoreError, keys};

use message::MessageIds;
use queue::{FlowControl, MemoryGauge, Overflow, QueueEnv, QueueLimits, QueueOptions};
use retained::RetainedStore;
use session::SessionRegistry;
use vhost::VHost;

/// Everything the front ends share.
#[derive(Debug)]
pub struct Core {
    /// The default vhost `/`, home of MQTT sessions and `amq.topic`.
    pub vhost: Arc<VHost>,
    /// Every configured vhost by name (including `/`).
    pub vhosts: std::collections::HashMap<String, Arc<VHost>>,
    /// MQTT sessions.
    pub sessions: Arc<SessionRegistry>,
    /// Retained MQTT messages.
    pub retained: RetainedStore,
    /// Users and access rules (changeable at runtime).
    pub auth: Arc<Authenticator>,
    /// Bytes queued gateway-wide.
    pub memory: Arc<MemoryGauge>,
    /// Message id allocator.
    pub ids: MessageIds,
    /// Topic rules applied to MQTT publishes (changeable at runtime).
    pub rules: rules::RuleEngine,
    /// Where durable state is kept.
    pub store: SharedStore,
    /// Live client connections (for the admin API).
    pub connections: Arc<crate::registry::Connections>,
    /// Counters the front ends keep, and readiness (see [`crate::metrics`]).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Stored records not yet claimed by their owner (SQS and SNS take theirs
    /// when they start).
    recovered: Mutex<Recovered>,
}

impl Core {
    /// The vhost called `name`, if configured.
    pub fn vhost_named(&self, name: &str) -> Option<&Arc<VHost>> {
        self.vhosts.get(name)
    }

    /// Builds the core from configuration and whatever `store` kept: durable
    /// exchanges, queues (with their messages) and bindings, persistent MQTT
    /// sessions and retained messages.
    pub fn new(config: &Config, store: SharedStore) -> Result<Arc<Self>, StoreError> {
        let mut recovered = crate::store::recovery::load(&*store)?;
        let env = QueueEnv::with_store(
            config.limits.memory_high_watermark.as_usize(),
            store.clone(),
        );
        *env.recovered.lock() = std::mem::take(&mut recovered.queues);
        let memory = env.memory.clone();
        let vhost = VHost::new("/", env.clone());
        let mut vhosts = std::collections::HashMap::new();
        vhosts.insert("/".to_owned(), vhost.clone());
        for name in &config.amqp.vhosts {
            vhosts
                .entry(name.clone())
                .or_insert_with(|| VHost::new(name, env.clone()));
        }
        // Exchanges, then queues (which take their entries), then bindings.
        let in_vhost = |r: &MetaRecord, what: &str| {
            let v = vhosts.get(&r.part(0));
            if v.is_none() {
                tracing::warn!(
                    vhost = %r.part(0),
                    name = %r.part(1),
                    "a stored {what} belongs to a vhost that is no longer configured; ignored"
                );
            }
            v.cloned()
        };
        for r in recovered.take(keys::EXCHANGE) {
            if let Some(v) = in_vhost(&r, "exchange") {
                v.restore_exchange(&r);
            }
        }
        for r in recovered.take(keys::QUEUE) {
            if let Some(v) = in_vhost(&r, "queue") {
                v.restore_queue(&r);
            }
        }
        for r in recovered.take(keys::BINDING) {
            if let Some(v) = vhosts.get(&r.part(0)) {
                v.restore_binding(&r);
            }
        }
        let session_queues = QueueOptions {
            durable: false,
            auto_delete: false,
            best_effort_needs_consumer: true,
            limits: QueueLimits {
                max_messages: Some(config.mqtt.max_queued_messages),
                max_bytes: None,
                max_best_effort: Some(config.mqtt.max_queued_qos0),
                overflow: match config.mqtt.overflow {
                    OverflowPolicy::DropOldest => Overflow::DropHead,
                    OverflowPolicy::DropNewest => Overflow::DropNew,
                },
            },
            flow: flow_control(&config.mqtt),
            ..Default::default()
        };
        let sessions = Arc::new(SessionRegistry::new(vhost.clone(), session_queues));
        sessions.restore(recovered.take(keys::SESSION), recovered.take(keys::PACKET));
        let retained = RetainedStore::with_store(store.clone());
        retained.restore(recovered.take(keys::RETAINED));
        let reserved = recovered
            .meta
            .get(&keys::IDENTITY)
            .and_then(|rs| rs.iter().find(|r| r.part(0) == "message-ids"))
            .and_then(|r| <[u8; 8]>::try_from(&r.value[..]).ok())
            .map_or(0, u64::from_be_bytes);
        let ids = MessageIds::with_store(store.clone(), reserved.max(recovered.max_message_id));
        // Users, ACL and rules: the configuration's, with runtime changes over them.
        let auth = Authenticator::restored(
            &config.auth,
            store.clone(),
            recovered.take(keys::USER),
            recovered.take(keys::ACL),
        );
        let rules =
            rules::RuleEngine::restored(&config.rules, store.clone(), recovered.take(keys::RULE));
        Ok(Arc::new(Core {
            sessions,
            vhost,
            vhosts,
            retained,
            auth: Arc::new(auth),
            memory,
            ids,
            rules,
            store,
            connections: crate::registry::Connections::new(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            recovered: Mutex::new(recovered),
        }))
    }

    /// A stable random identity named `name` (an id prefix, say): the stored
    /// one, or a new one that is stored for next time.
    pub fn identity(&self, name: &str) -> u64 {
        let stored = self
            .recovered
            .lock()
            .meta
            .get(&keys::IDENTITY)
            .and_then(|rs| rs.iter().find(|r| r.part(0) == name))
            .and_then(|r| <[u8; 8]>::try_from(&r.value[..]).ok())
            .map(u64::from_be_bytes);
        if let Some(v) = stored {
            return v;
        }
        let v: u64 = rand::random();
        let mut ops = crate::store::Ops::new();
        ops.push(crate::store::Op::Put(
            crate::store::Space::Meta,
            keys::meta_key(keys::IDENTITY, &[name.as_bytes()]),
            bytes::Bytes::copy_from_slice(&v.to_be_bytes()),
        ));
        self.store.submit(ops);
        v
    }

    /// Takes the stored records of `kind` that were not claimed yet (the SQS
    /// and SNS services call it when they start).
    pub fn take_recovered(&self, kind: u8) -> Vec<MetaRecord> {
        self.recovered.lock().take(kind)
    }

    /// Ends recovery once every front end has rebuilt its state: stored
    /// messages of queues nobody claimed are removed, and one line reports
    /// what came back.
    pub fn finish_recovery(&self) {
        let orphans: Vec<u64> = {
            let env = self.vhost.env();
            let mut left = env.recovered.lock();
            left.drain().map(|(q, _)| q).collect()
        };
        crate::store::recovery::drop_orphans(&*self.store, &orphans);
        let queues: usize = self.vhosts.values().map(|v| v.queue_count()).sum();
        if self.store.is_persistent() {
            tracing::info!(
                queues,
                sessions = self.sessions.len(),
                retained = self.retained.len(),
                "recovered stored state"
            );
        }
    }
}

/// Publisher flow control for queues MQTT publishers fill (session queues,
/// bridge outboxes), from `mqtt.flow_control_*`; `None` when it is off.
pub fn flow_control(mqtt: &crate::config::MqttConfig) -> Option<FlowControl> {
    // `then`, not `then_some`: the clamp must not run when it is off (0).
    (mqtt.flow_control_at > 0).then(|| FlowControl {
        high: mqtt.flow_control_at,
        high_best_effort: (mqtt.max_queued_qos0 / 2).clamp(1, mqtt.flow_control_at),
        timeout: mqtt.flow_control_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_control_at_zero_turns_it_off_and_small_values_stay_valid() {
        let mut mqtt = crate::config::MqttConfig {
            flow_control_at: 0,
            ..Default::default()
        };
        assert_eq!(flow_control(&mqtt), None);
        mqtt.flow_control_at = 1;
        mqtt.max_queued_qos0 = 0;
        let f = flow_control(&mqtt).expect("on");
        assert_eq!((f.high, f.high_best_effort), (1, 1));
    }
}
