//! A virtual host: a namespace of exchanges and queues, and the publish entry
//! point every front end uses.
//!
//! MQTT clients live in the default vhost `/` and publish through `amq.topic`;
//! AMQP connections choose their vhost; SQS queues and SNS topics live in `/`.
//! Publishing is [`VHost::publish`], called from the publisher's own task.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::bytestr::ByteStr;
use super::exchange::{
    Binding, BindingOptions, Destination, Exchange, ExchangeKind, ExchangeOptions, RouteScratch,
    route,
};
use super::message::{KeyForm, SharedMessage};
use super::queue::{BoundFrom, EnqueueOutcome, MemoryGauge, Queue, QueueOptions};

/// The exchange MQTT topics route through.
pub const AMQ_TOPIC: &str = "amq.topic";

/// What happened to a published message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Queues that accepted it.
    pub queued: usize,
    /// Queues that refused it (`reject-publish`).
    pub rejected: usize,
    /// Queues it was routed to, whatever they did with it.
    pub routed: usize,
}

/// Why a declaration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclareError {
    /// An entity of that name exists with different properties.
    #[error("{0} exists with different properties")]
    Mismatch(String),
    /// The name is reserved (`amq.` prefix).
    #[error("{0} is reserved")]
    Reserved(String),
    /// A passive declare named nothing.
    #[error("no {0}")]
    NotFound(String),
}

/// A namespace of exchanges and queues.
#[derive(Debug)]
pub struct VHost {
    name: ByteStr,
    exchanges: RwLock<HashMap<ByteStr, Arc<Exchange>, ahash::RandomState>>,
    queues: RwLock<HashMap<ByteStr, Arc<Queue>, ahash::RandomState>>,
    amq_topic: Arc<Exchange>,
    memory: Arc<MemoryGauge>,
}

impl VHost {
    /// A vhost with the standard `amq.*` exchanges.
    pub fn new(name: &str, memory: Arc<MemoryGauge>) -> Arc<Self> {
        let durable = ExchangeOptions {
            durable: true,
            ..Default::default()
        };
        let amq_topic = Exchange::new(AMQ_TOPIC.into(), ExchangeKind::Topic, durable.clone(), true);
        let mut exchanges: HashMap<ByteStr, Arc<Exchange>, ahash::RandomState> = HashMap::default();
        for (n, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
        ] {
            exchanges.insert(
                n.into(),
                Exchange::new(n.into(), kind, durable.clone(), false),
            );
        }
        exchanges.insert(AMQ_TOPIC.into(), amq_topic.clone());
        Arc::new(VHost {
            name: name.into(),
            exchanges: RwLock::new(exchanges),
            queues: RwLock::new(HashMap::default()),
            amq_topic,
            memory,
        })
    }

    /// The vhost's name.
    pub fn name(&self) -> &ByteStr {
        &self.name
    }

    /// The `amq.topic` exchange (MQTT's).
    pub fn amq_topic(&self) -> &Arc<Exchange> {
        &self.amq_topic
    }

    /// The gateway's memory gauge.
    pub fn memory(&self) -> &Arc<MemoryGauge> {
        &self.memory
    }

    /// An exchange by name.
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    /// Declares (or finds an identical) exchange.
    pub fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<Arc<Exchange>, DeclareError> {
        let mut map = self.exchanges.write();
        if let Some(ex) = map.get(name) {
            if ex.kind() != kind || ex.durable != options.durable {
                return Err(DeclareError::Mismatch(format!("exchange '{name}'")));
            }
            return Ok(ex.clone());
        }
        if name.starts_with("amq.") {
            return Err(DeclareError::Reserved(format!("exchange name '{name}'")));
        }
        let ex = Exchange::new(name.into(), kind, options, false);
        map.insert(name.into(), ex.clone());
        Ok(ex)
    }

    /// A queue by name.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// Declares a queue, or returns the existing one of that name. The flag says
    /// whether it was created.
    pub fn declare_queue(&self, name: &str, options: QueueOptions) -> (Arc<Queue>, bool) {
        let mut map = self.queues.write();
        if let Some(q) = map.get(name) {
            return (q.clone(), false);
        }
        let q = Queue::new(name.into(), options, self.memory.clone());
        map.insert(name.into(), q.clone());
        (q, true)
    }

    /// Deletes a queue: removes its bindings, drops its messages and wakes its
    /// consumers so they notice. Returns it if it existed.
    pub fn delete_queue(&self, name: &str) -> Option<Arc<Queue>> {
        let q = self.queues.write().remove(name)?;
        let dest = Destination::Queue(q.clone());
        let bound: Vec<BoundFrom> = std::mem::take(&mut *q.bound_from.lock());
        for b in bound {
            if let Some(ex) = b.exchange.upgrade() {
                ex.unbind(&dest, &b.key, b.key_form);
            }
        }
        for w in q.delete() {
            w.wake();
        }
        Some(q)
    }

    /// Binds `queue` to `exchange` under `key`. Returns whether the binding is new
    /// (an existing one has its options replaced).
    pub fn bind_queue(
        &self,
        exchange: &Arc<Exchange>,
        queue: &Arc<Queue>,
        key: &str,
        key_form: KeyForm,
        options: BindingOptions,
    ) -> bool {
        let fresh = exchange.bind(Binding {
            destination: Destination::Queue(queue.clone()),
            key: key.into(),
            key_form,
            options,
        });
        if fresh {
            queue.bound_from.lock().push(BoundFrom {
                exchange: Arc::downgrade(exchange),
                key: key.into(),
                key_form,
            });
        }
        fresh
    }

    /// Removes one binding of `queue`. Returns whether it existed.
    pub fn unbind_queue(
        &self,
        exchange: &Arc<Exchange>,
        queue: &Arc<Queue>,
        key: &str,
        key_form: KeyForm,
    ) -> bool {
        let removed = exchange.unbind(&Destination::Queue(queue.clone()), key, key_form);
        if removed {
            queue.bound_from.lock().retain(|b| {
                !(b.key.as_str() == key && b.exchange.as_ptr() == Arc::as_ptr(exchange))
            });
        }
        removed
    }

    /// Routes `msg` from `exchange` and enqueues it on every queue it reaches.
    pub fn publish(
        &self,
        exchange: &Arc<Exchange>,
        msg: &SharedMessage,
        scratch: &mut RouteScratch,
    ) -> PublishOutcome {
        route(exchange, msg, |name| self.exchange(name), scratch);
        let mut outcome = PublishOutcome {
            routed: scratch.targets.len(),
            ..Default::default()
        };
        for (queue, hints) in scratch.targets.drain(..) {
            match queue.enqueue(msg, hints) {
                EnqueueOutcome::Queued => outcome.queued += 1,
                EnqueueOutcome::Rejected => outcome.rejected += 1,
                EnqueueOutcome::Dropped(_) => {}
            }
        }
        outcome
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.read().len()
    }

    /// Every queue (for listings).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// Every exchange (for listings).
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }
}
