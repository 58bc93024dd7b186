//! The pub/sub core: the one place where every protocol's messages meet.
//!
//! * [`message`]: the immutable, shared [`Message`](message::Message).
//! * [`exchange`] and [`topic_trie`]: exchanges, bindings and routing.
//! * [`queue`]: queues with leases, limits and consumer wake-ups.
//! * [`vhost`]: namespaces of exchanges and queues; the publish entry point.
//! * [`session`]: MQTT sessions that outlive connections, and shared groups.
//! * [`retained`]: retained messages by topic.
//!
//! Front ends translate their protocol into calls on these types from their own
//! connection tasks. Nothing here knows about sockets.

pub mod bytestr;
pub mod dead_letter;
pub mod exchange;
pub mod message;
pub mod props;
pub mod queue;
pub mod retained;
pub mod rules;
pub mod scheduler;
pub mod session;
pub mod topic_trie;
pub mod vhost;

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::{Config, OverflowPolicy};

use message::MessageIds;
use queue::{MemoryGauge, Overflow, QueueEnv, QueueLimits, QueueOptions};
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
    /// Users and access rules.
    pub auth: Arc<Authenticator>,
    /// Bytes queued gateway-wide.
    pub memory: Arc<MemoryGauge>,
    /// Message id allocator.
    pub ids: MessageIds,
    /// Topic rules applied to MQTT publishes.
    pub rules: rules::RuleEngine,
}

impl Core {
    /// The vhost called `name`, if configured.
    pub fn vhost_named(&self, name: &str) -> Option<&Arc<VHost>> {
        self.vhosts.get(name)
    }

    /// Builds the core from configuration.
    pub fn new(config: &Config) -> Arc<Self> {
        let env = QueueEnv::new(config.limits.memory_high_watermark.as_usize());
        let memory = env.memory.clone();
        let vhost = VHost::new("/", env.clone());
        let mut vhosts = std::collections::HashMap::new();
        vhosts.insert("/".to_owned(), vhost.clone());
        for name in &config.amqp.vhosts {
            vhosts
                .entry(name.clone())
                .or_insert_with(|| VHost::new(name, env.clone()));
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
            ..Default::default()
        };
        Arc::new(Core {
            sessions: Arc::new(SessionRegistry::new(vhost.clone(), session_queues)),
            vhost,
            vhosts,
            retained: RetainedStore::default(),
            auth: Arc::new(Authenticator::new(&config.auth)),
            memory,
            ids: MessageIds::default(),
            rules: rules::RuleEngine::new(&config.rules),
        })
    }
}
