//! A virtual host: a namespace of exchanges and queues, and the publish entry
//! point every front end uses.
//!
//! MQTT clients live in the default vhost `/` and publish through `amq.topic`;
//! AMQP connections choose their vhost; SQS queues and SNS topics live in `/`.
//! Publishing is [`VHost::publish`], called from the publisher's own task.
//! Declarations follow AMQP 0-9-1 rules (equivalence, exclusivity, `amq.`
//! names), so every front end gets the same answers.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::RwLock;

use super::bytestr::ByteStr;
use super::exchange::{
    Binding, BindingOptions, Destination, Exchange, ExchangeKind, ExchangeOptions, RouteScratch,
    route,
};
use super::message::{KeyForm, SharedMessage};
use super::queue::{
    BoundFrom, DeliveryHints, EnqueueOutcome, MemoryGauge, Queue, QueueEnv, QueueOptions,
};
use crate::store::records::{
    BindingRecord, ExchangeRecord, QueueRecord, binding_key, from_json, put_json,
};
use crate::store::recovery::MetaRecord;
use crate::store::{Op, Ops, SharedStore, Space, keys};

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

/// Why a declaration, binding or deletion was refused. Each maps to one AMQP
/// reply code (noted on the variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VHostError {
    /// 406 PRECONDITION_FAILED: exists with different properties.
    #[error("PRECONDITION_FAILED - inequivalent arg for {0}")]
    Mismatch(String),
    /// 403 ACCESS_REFUSED: the `amq.` prefix is reserved.
    #[error("ACCESS_REFUSED - {0} name prefix 'amq.' is reserved")]
    Reserved(String),
    /// 404 NOT_FOUND.
    #[error("NOT_FOUND - no {0}")]
    NotFound(String),
    /// 405 RESOURCE_LOCKED: an exclusive queue of another connection.
    #[error("RESOURCE_LOCKED - cannot obtain exclusive access to locked {0}")]
    Locked(String),
    /// 406 PRECONDITION_FAILED: if-unused / if-empty not satisfied.
    #[error("PRECONDITION_FAILED - {0}")]
    InUse(String),
}

impl VHostError {
    /// The AMQP reply code for this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            VHostError::Mismatch(_) | VHostError::InUse(_) => 406,
            VHostError::Reserved(_) => 403,
            VHostError::NotFound(_) => 404,
            VHostError::Locked(_) => 405,
        }
    }
}

/// A namespace of exchanges and queues.
#[derive(Debug)]
pub struct VHost {
    name: ByteStr,
    exchanges: RwLock<HashMap<ByteStr, Arc<Exchange>, ahash::RandomState>>,
    queues: RwLock<HashMap<ByteStr, Arc<Queue>, ahash::RandomState>>,
    amq_topic: Arc<Exchange>,
    env: QueueEnv,
}

impl VHost {
    /// A vhost with the standard exchanges (`amq.direct`, `amq.fanout`,
    /// `amq.topic`, `amq.headers`, `amq.match`).
    pub fn new(name: &str, env: QueueEnv) -> Arc<Self> {
        let durable = ExchangeOptions {
            durable: true,
            ..Default::default()
        };
        let amq_topic = Exchange::new(AMQ_TOPIC.into(), ExchangeKind::Topic, durable.clone(), true);
        let mut exchanges: HashMap<ByteStr, Arc<Exchange>, ahash::RandomState> = HashMap::default();
        for (n, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
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
            env,
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

    /// What new queues share (memory gauge, scheduler).
    pub fn env(&self) -> &QueueEnv {
        &self.env
    }

    /// The gateway's memory gauge.
    pub fn memory(&self) -> &Arc<MemoryGauge> {
        &self.env.memory
    }

    /// An exchange by name (not the default exchange, which has no object).
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    /// Declares an exchange, or checks an existing one is equivalent. The flag
    /// says whether it was created.
    pub fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<(Arc<Exchange>, bool), VHostError> {
        let mut map = self.exchanges.write();
        if let Some(ex) = map.get(name) {
            if ex.kind() != kind
                || ex.durable != options.durable
                || ex.auto_delete != options.auto_delete
                || ex.internal != options.internal
                || ex.alternate != options.alternate
            {
                return Err(VHostError::Mismatch(format!(
                    "exchange '{name}' in vhost '{}'",
                    self.name
                )));
            }
            return Ok((ex.clone(), false));
        }
        if name.starts_with("amq.") {
            return Err(VHostError::Reserved(format!("exchange '{name}'")));
        }
        let durable = options.durable;
        let ex = Exchange::new(name.into(), kind, options, false);
        map.insert(name.into(), ex.clone());
        drop(map);
        if durable && let Some(store) = self.store() {
            let record = ExchangeRecord {
                kind: kind.as_str().to_owned(),
                auto_delete: ex.auto_delete,
                internal: ex.internal,
                alternate: ex.alternate.as_ref().map(|a| a.to_string()),
                args: ex.args.clone(),
            };
            let mut ops = Ops::new();
            ops.push(put_json(self.exchange_key(name), &record));
            store.submit(ops);
        }
        Ok((ex, true))
    }

    /// The store, when it keeps anything.
    fn store(&self) -> Option<&SharedStore> {
        self.env.store.is_persistent().then_some(&self.env.store)
    }

    fn exchange_key(&self, name: &str) -> crate::store::Key {
        keys::meta_key(keys::EXCHANGE, &[self.name.as_bytes(), name.as_bytes()])
    }

    fn queue_key(&self, name: &str) -> crate::store::Key {
        keys::meta_key(keys::QUEUE, &[self.name.as_bytes(), name.as_bytes()])
    }

    /// Whether `q` is this vhost's queue of that name (not a session queue).
    fn is_catalogued(&self, q: &Arc<Queue>) -> bool {
        self.queues
            .read()
            .get(q.name().as_str())
            .is_some_and(|x| Arc::ptr_eq(x, q))
    }

    /// The stored form of a binding from `source`, if it is kept: both ends
    /// durable, and a queue destination must be one of this vhost's.
    fn binding_record(&self, source: &Exchange, b: &Binding) -> Option<BindingRecord> {
        if !source.durable || b.hook.is_some() {
            return None;
        }
        let (to_exchange, destination) = match &b.destination {
            Destination::Queue(q) => {
                if !q.is_stored() || !self.is_catalogued(q) {
                    return None;
                }
                (false, q.name().to_string())
            }
            Destination::Exchange(e) => {
                if !e.durable {
                    return None;
                }
                (true, e.name().to_string())
            }
        };
        Some(BindingRecord {
            source: source.name().to_string(),
            to_exchange,
            destination,
            key: b.key.to_string(),
            mqtt_key: b.key_form == KeyForm::Mqtt,
            args: b.args.as_deref().cloned(),
        })
    }

    /// Stores or forgets the bindings of `source` that lead to `dest` under
    /// `key` (every key when `None`) and match `args` (any when `None`).
    fn store_bindings(
        &self,
        source: &Exchange,
        dest: &Destination,
        key: Option<&str>,
        args: Option<&FieldTable>,
        put: bool,
    ) {
        let Some(store) = self.store() else {
            return;
        };
        if !source.durable {
            return;
        }
        let mut ops = Ops::new();
        for b in source.bindings() {
            if !b.destination.same(dest)
                || key.is_some_and(|k| &*b.key != k)
                || args.is_some_and(|a| !super::exchange::same_args(b.args.as_deref(), Some(a)))
            {
                continue;
            }
            if let Some(r) = self.binding_record(source, &b) {
                let k = binding_key(&self.name, &r);
                ops.push(if put {
                    put_json(k, &r)
                } else {
                    Op::Remove(Space::Meta, k)
                });
            }
        }
        store.submit(ops);
    }

    /// Rewrites a durable queue's record (after its settings changed).
    pub fn save_queue(&self, q: &Arc<Queue>) {
        if !q.is_stored() || !self.is_catalogued(q) {
            return;
        }
        if let Some(store) = self.store() {
            let record = QueueRecord {
                uid: q.uid(),
                options: q.options().clone(),
                live: q.settings(),
            };
            let mut ops = Ops::new();
            ops.push(put_json(self.queue_key(q.name()), &record));
            store.submit(ops);
        }
    }

    /// Rebuilds a stored exchange (start-up; writes nothing).
    pub fn restore_exchange(&self, r: &MetaRecord) {
        let name = r.part(1);
        let Some(rec) = from_json::<ExchangeRecord>("exchange", &r.value) else {
            return;
        };
        let Some(kind) = ExchangeKind::parse(&rec.kind) else {
            tracing::warn!(exchange = %name, kind = %rec.kind, "skipping a stored exchange of unknown type");
            return;
        };
        if name.starts_with("amq.") || name.is_empty() {
            return;
        }
        let options = ExchangeOptions {
            durable: true,
            auto_delete: rec.auto_delete,
            internal: rec.internal,
            alternate: rec.alternate.map(ByteStr::from),
            args: rec.args,
        };
        let ex = Exchange::new(name.as_str().into(), kind, options, false);
        self.exchanges.write().insert(name.into(), ex);
    }

    /// Rebuilds a stored queue with its messages (start-up; writes nothing).
    pub fn restore_queue(self: &Arc<Self>, r: &MetaRecord) {
        let name = r.part(1);
        let Some(rec) = from_json::<QueueRecord>("queue", &r.value) else {
            return;
        };
        let q = Queue::restored(name.as_str().into(), rec.options, rec.uid, &self.env);
        q.update_settings(|l| *l = rec.live);
        let _ = q.vhost.set(Arc::downgrade(self));
        self.queues.write().insert(name.into(), q);
    }

    /// Rebuilds a stored binding (start-up; writes nothing). Bindings whose
    /// ends are gone are skipped.
    pub fn restore_binding(&self, r: &MetaRecord) {
        let Some(rec) = from_json::<BindingRecord>("binding", &r.value) else {
            return;
        };
        let Some(source) = self.exchange(&rec.source) else {
            return;
        };
        let form = if rec.mqtt_key {
            KeyForm::Mqtt
        } else {
            KeyForm::Amqp
        };
        if rec.to_exchange {
            if let Some(dest) = self.exchange(&rec.destination) {
                self.bind_exchange_inner(&source, &dest, &rec.key, rec.args);
            }
        } else if let Some(q) = self.queue(&rec.destination) {
            self.bind_queue_inner(
                &source,
                &q,
                &rec.key,
                form,
                BindingOptions::plain(),
                rec.args,
                None,
            );
        }
    }

    /// Deletes an exchange: its bindings and the bindings leading to it go too.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), VHostError> {
        if name.starts_with("amq.") || name.is_empty() {
            return Err(VHostError::Reserved(format!("exchange '{name}'")));
        }
        let ex = {
            let mut map = self.exchanges.write();
            let Some(ex) = map.get(name) else {
                return Err(VHostError::NotFound(format!(
                    "exchange '{name}' in vhost '{}'",
                    self.name
                )));
            };
            if if_unused && ex.binding_count() > 0 {
                return Err(VHostError::InUse(format!("exchange '{name}' in use")));
            }
            let ex = ex.clone();
            map.remove(name);
            ex
        };
        self.remove_exchange(&ex);
        Ok(())
    }

    fn remove_exchange(&self, ex: &Arc<Exchange>) {
        let dest = Destination::Exchange(ex.clone());
        let incoming: Vec<BoundFrom> = std::mem::take(&mut *ex.bound_from.lock());
        if ex.durable
            && let Some(store) = self.store()
        {
            let mut ops = Ops::new();
            ops.push(Op::Remove(Space::Meta, self.exchange_key(ex.name())));
            ops.push(Op::RemovePrefix(
                Space::Meta,
                keys::meta_key(keys::BINDING, &[self.name.as_bytes(), ex.name().as_bytes()]),
            ));
            store.submit(ops);
        }
        for b in incoming {
            if let Some(source) = b.exchange.upgrade() {
                self.store_bindings(&source, &dest, Some(&b.key), None, false);
                source.unbind(&dest, &b.key, b.key_form, None);
                self.auto_delete_exchange(&source);
            }
        }
        // Bindings from this exchange: forget them in their destinations' lists.
        for b in ex.bindings() {
            match &b.destination {
                Destination::Queue(q) => q
                    .bound_from
                    .lock()
                    .retain(|x| x.exchange.as_ptr() != Arc::as_ptr(ex)),
                Destination::Exchange(e) => e
                    .bound_from
                    .lock()
                    .retain(|x| x.exchange.as_ptr() != Arc::as_ptr(ex)),
            }
        }
        ex.mark_deleted();
    }

    /// Deletes `ex` if it is auto-delete and has no bindings left.
    fn auto_delete_exchange(&self, ex: &Arc<Exchange>) {
        if ex.auto_delete && ex.binding_count() == 0 && !ex.is_deleted() {
            let removed = {
                let mut map = self.exchanges.write();
                match map.get(ex.name().as_str()) {
                    Some(e) if Arc::ptr_eq(e, ex) => map.remove(ex.name().as_str()),
                    _ => None,
                }
            };
            if let Some(ex) = removed {
                self.remove_exchange(&ex);
            }
        }
    }

    /// A queue by name.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// Declares a queue owned by connection `owner` (for exclusive queues), or
    /// checks an existing one is equivalent and usable by `owner`. The flag says
    /// whether it was created.
    pub fn declare_queue(
        self: &Arc<Self>,
        name: &str,
        options: QueueOptions,
        owner: Option<u64>,
    ) -> Result<(Arc<Queue>, bool), VHostError> {
        let mut map = self.queues.write();
        if let Some(q) = map.get(name) {
            check_owner(q, owner)?;
            if q.options() != &options {
                return Err(VHostError::Mismatch(format!(
                    "queue '{name}' in vhost '{}'",
                    self.name
                )));
            }
            q.touch();
            return Ok((q.clone(), false));
        }
        let owner = options.exclusive.then_some(owner).flatten();
        let q = Queue::with_owner(name.into(), options, owner, &self.env);
        let _ = q.vhost.set(Arc::downgrade(self));
        map.insert(name.into(), q.clone());
        drop(map);
        self.save_queue(&q);
        Ok((q, true))
    }

    /// Finds a queue for use by connection `owner`: 404 if missing, 405 if it is
    /// another connection's exclusive queue.
    pub fn queue_for(&self, name: &str, owner: Option<u64>) -> Result<Arc<Queue>, VHostError> {
        let q = self.queue(name).ok_or_else(|| {
            VHostError::NotFound(format!("queue '{name}' in vhost '{}'", self.name))
        })?;
        check_owner(&q, owner)?;
        Ok(q)
    }

    /// Deletes a queue: removes its bindings, drops its messages and wakes its
    /// consumers so they notice. Returns it if it existed.
    pub fn delete_queue(&self, name: &str) -> Option<Arc<Queue>> {
        let q = self.queue(name)?;
        let dest = Destination::Queue(q.clone());
        let bound: Vec<BoundFrom> = std::mem::take(&mut *q.bound_from.lock());
        if q.is_stored() {
            // While the queue is still catalogued, so its records are found.
            for b in &bound {
                if let Some(ex) = b.exchange.upgrade() {
                    self.store_bindings(&ex, &dest, Some(&b.key), None, false);
                }
            }
            if let Some(store) = self.store() {
                let mut ops = Ops::new();
                ops.push(Op::Remove(Space::Meta, self.queue_key(name)));
                store.submit(ops);
            }
        }
        {
            let mut map = self.queues.write();
            match map.get(name) {
                Some(x) if Arc::ptr_eq(x, &q) => {
                    map.remove(name);
                }
                _ => return None,
            }
        }
        for b in bound {
            if let Some(ex) = b.exchange.upgrade() {
                ex.unbind(&dest, &b.key, b.key_form, None);
                self.auto_delete_exchange(&ex);
            }
        }
        for w in q.delete() {
            w.wake();
        }
        Some(q)
    }

    /// Deletes a queue if the conditions hold; returns how many messages it had.
    pub fn delete_queue_checked(
        &self,
        name: &str,
        owner: Option<u64>,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<usize, VHostError> {
        let q = self.queue_for(name, owner)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(VHostError::InUse(format!(
                "queue '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        let count = q.ready_len();
        if if_empty && count > 0 {
            return Err(VHostError::InUse(format!(
                "queue '{name}' in vhost '{}' is not empty",
                self.name
            )));
        }
        self.delete_queue(name);
        Ok(count)
    }

    /// Deletes every exclusive queue of connection `owner` (it closed).
    pub fn delete_exclusive(&self, owner: u64) {
        let names: Vec<ByteStr> = self
            .queues
            .read()
            .values()
            .filter(|q| q.owner() == Some(owner))
            .map(|q| q.name().clone())
            .collect();
        for n in names {
            self.delete_queue(&n);
        }
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
        self.bind_queue_with_args(exchange, queue, key, key_form, options, None)
    }

    /// [`VHost::bind_queue`] with binding arguments (headers exchanges).
    pub fn bind_queue_with_args(
        &self,
        exchange: &Arc<Exchange>,
        queue: &Arc<Queue>,
        key: &str,
        key_form: KeyForm,
        options: BindingOptions,
        args: Option<FieldTable>,
    ) -> bool {
        let stored_args = args.clone();
        let fresh = self.bind_queue_inner(exchange, queue, key, key_form, options, args, None);
        if fresh {
            self.store_bindings(
                exchange,
                &Destination::Queue(queue.clone()),
                Some(key),
                Some(stored_args.as_ref().unwrap_or(&FieldTable::default())),
                true,
            );
        }
        fresh
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_queue_inner(
        &self,
        exchange: &Arc<Exchange>,
        queue: &Arc<Queue>,
        key: &str,
        key_form: KeyForm,
        options: BindingOptions,
        args: Option<FieldTable>,
        hook: Option<Arc<dyn super::exchange::BindingHook>>,
    ) -> bool {
        let fresh = exchange.bind(Binding {
            destination: Destination::Queue(queue.clone()),
            key: key.into(),
            key_form,
            options,
            args: args.map(Arc::new),
            hook,
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

    /// Binds `queue` to `exchange` with a hook that filters and transforms what
    /// passes (SNS subscriptions; the SNS service stores them itself).
    pub fn bind_queue_hooked(
        &self,
        exchange: &Arc<Exchange>,
        queue: &Arc<Queue>,
        key: &str,
        hook: Arc<dyn super::exchange::BindingHook>,
    ) -> bool {
        self.bind_queue_inner(
            exchange,
            queue,
            key,
            KeyForm::Amqp,
            BindingOptions::plain(),
            None,
            Some(hook),
        )
    }

    /// Removes one binding of `queue` (with these arguments; `None`: any).
    /// Returns whether it existed.
    pub fn unbind_queue(
        &self,
        exchange: &Arc<Exchange>,
        queue: &Arc<Queue>,
        key: &str,
        key_form: KeyForm,
        args: Option<&FieldTable>,
    ) -> bool {
        let dest = Destination::Queue(queue.clone());
        self.store_bindings(exchange, &dest, Some(key), args, false);
        let removed = exchange.unbind(&dest, key, key_form, args);
        if removed {
            let mut bound = queue.bound_from.lock();
            if let Some(at) = bound
                .iter()
                .position(|b| b.key.as_str() == key && b.exchange.as_ptr() == Arc::as_ptr(exchange))
            {
                bound.remove(at);
            }
            drop(bound);
            self.auto_delete_exchange(exchange);
        }
        removed
    }

    /// Binds exchange `destination` to `source` (exchange-to-exchange).
    pub fn bind_exchange(
        &self,
        source: &Arc<Exchange>,
        destination: &Arc<Exchange>,
        key: &str,
        args: Option<FieldTable>,
    ) -> bool {
        let stored_args = args.clone();
        let fresh = self.bind_exchange_inner(source, destination, key, args);
        if fresh {
            self.store_bindings(
                source,
                &Destination::Exchange(destination.clone()),
                Some(key),
                Some(stored_args.as_ref().unwrap_or(&FieldTable::default())),
                true,
            );
        }
        fresh
    }

    fn bind_exchange_inner(
        &self,
        source: &Arc<Exchange>,
        destination: &Arc<Exchange>,
        key: &str,
        args: Option<FieldTable>,
    ) -> bool {
        let fresh = source.bind(Binding {
            destination: Destination::Exchange(destination.clone()),
            key: key.into(),
            key_form: KeyForm::Amqp,
            options: BindingOptions::plain(),
            args: args.map(Arc::new),
            hook: None,
        });
        if fresh {
            destination.bound_from.lock().push(BoundFrom {
                exchange: Arc::downgrade(source),
                key: key.into(),
                key_form: KeyForm::Amqp,
            });
        }
        fresh
    }

    /// Removes an exchange-to-exchange binding (with these arguments; `None`:
    /// any). Returns whether it existed.
    pub fn unbind_exchange(
        &self,
        source: &Arc<Exchange>,
        destination: &Arc<Exchange>,
        key: &str,
        args: Option<&FieldTable>,
    ) -> bool {
        let dest = Destination::Exchange(destination.clone());
        self.store_bindings(source, &dest, Some(key), args, false);
        let removed = source.unbind(&dest, key, KeyForm::Amqp, args);
        if removed {
            let mut bound = destination.bound_from.lock();
            if let Some(at) = bound
                .iter()
                .position(|b| b.key.as_str() == key && b.exchange.as_ptr() == Arc::as_ptr(source))
            {
                bound.remove(at);
            }
            drop(bound);
            self.auto_delete_exchange(source);
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
        let mut congested = None;
        for t in scratch.targets.drain(..) {
            let routed = match &t.hook {
                Some(h) => h.transform(msg),
                None => msg.clone(),
            };
            let (result, full) = t.queue.enqueue_flow(&routed, t.hints);
            match result {
                EnqueueOutcome::Queued => outcome.queued += 1,
                EnqueueOutcome::Rejected => outcome.rejected += 1,
                EnqueueOutcome::Dropped(_) => {}
            }
            if full && congested.is_none() {
                congested = Some(t.queue);
            }
        }
        scratch.congested = congested;
        outcome
    }

    /// Publishes through the default exchange: straight to the queue named by
    /// the routing key.
    pub fn publish_default(&self, queue_name: &str, msg: &SharedMessage) -> PublishOutcome {
        let Some(queue) = self.queue(queue_name) else {
            return PublishOutcome::default();
        };
        let hints = DeliveryHints {
            qos: msg.qos,
            ..Default::default()
        };
        match queue.enqueue(msg, hints) {
            EnqueueOutcome::Queued => PublishOutcome {
                queued: 1,
                rejected: 0,
                routed: 1,
            },
            EnqueueOutcome::Rejected => PublishOutcome {
                queued: 0,
                rejected: 1,
                routed: 1,
            },
            EnqueueOutcome::Dropped(_) => PublishOutcome {
                queued: 0,
                rejected: 0,
                routed: 1,
            },
        }
    }

    /// Publishes a dead-lettered copy to `exchange` (`""`: the default exchange,
    /// to `queue` if given, else to the queue named by the routing key). Dead
    /// letters that route nowhere are dropped, as in RabbitMQ.
    pub fn publish_dead_letter(
        &self,
        exchange: &str,
        msg: &SharedMessage,
        from_queue: &str,
        queue: Option<&str>,
    ) {
        let outcome = if exchange.is_empty() {
            self.publish_default(queue.unwrap_or(&msg.routing_key), msg)
        } else {
            match self.exchange(exchange) {
                Some(ex) => self.publish(&ex, msg, &mut RouteScratch::default()),
                None => PublishOutcome::default(),
            }
        };
        if outcome.queued == 0 {
            tracing::debug!(
                queue = from_queue,
                exchange,
                "dead letter routed nowhere; dropped"
            );
        }
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

fn check_owner(q: &Queue, owner: Option<u64>) -> Result<(), VHostError> {
    match q.owner() {
        Some(o) if Some(o) != owner => Err(VHostError::Locked(format!("queue '{}'", q.name()))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dead_letter::DeadLetterTarget;
    use crate::core::message::Message;
    use crate::core::queue::{PullLimits, PullMode};
    use bytes::Bytes;

    fn vhost() -> Arc<VHost> {
        VHost::new("/", QueueEnv::new(usize::MAX))
    }

    fn msg(key: &str) -> SharedMessage {
        Arc::new(Message {
            id: 1,
            routing_key: key.into(),
            key_form: KeyForm::Amqp,
            exchange: "".into(),
            payload: Bytes::from_static(b"body"),
            qos: 1,
            retain: false,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        })
    }

    fn take_one(q: &Queue, mode: PullMode) -> Option<crate::core::queue::Delivery> {
        let mut out = Vec::new();
        q.pull(
            0,
            PullLimits {
                max: 1,
                max_leased: 1,
            },
            mode,
            &mut out,
        );
        out.pop()
    }

    #[test]
    fn redeclare_with_other_options_is_refused() {
        let v = vhost();
        v.declare_queue("q", QueueOptions::default(), Some(1))
            .unwrap();
        let other = QueueOptions {
            durable: true,
            ..Default::default()
        };
        assert_eq!(
            v.declare_queue("q", other, Some(1))
                .unwrap_err()
                .reply_code(),
            406
        );
        assert!(
            !v.declare_queue("q", QueueOptions::default(), Some(1))
                .unwrap()
                .1
        );
    }

    #[test]
    fn exclusive_queue_is_locked_to_its_connection() {
        let v = vhost();
        let ex = QueueOptions {
            exclusive: true,
            ..Default::default()
        };
        v.declare_queue("mine", ex.clone(), Some(1)).unwrap();
        assert_eq!(
            v.declare_queue("mine", ex, Some(2))
                .unwrap_err()
                .reply_code(),
            405
        );
        assert_eq!(v.queue_for("mine", Some(2)).unwrap_err().reply_code(), 405);
        v.delete_exclusive(1);
        assert!(v.queue("mine").is_none());
    }

    #[test]
    fn rejected_message_goes_to_dead_letter_queue() {
        let v = vhost();
        v.declare_exchange("dlx", ExchangeKind::Fanout, ExchangeOptions::default())
            .unwrap();
        let (dlq, _) = v
            .declare_queue("dlq", QueueOptions::default(), None)
            .unwrap();
        let dlx = v.exchange("dlx").unwrap();
        v.bind_queue(&dlx, &dlq, "", KeyForm::Amqp, BindingOptions::plain());
        let opts = QueueOptions {
            dead_letter: Some(DeadLetterTarget {
                exchange: "dlx".into(),
                routing_key: None,
            }),
            ..Default::default()
        };
        let (work, _) = v.declare_queue("work", opts, None).unwrap();
        v.publish_default("work", &msg("work"));
        let d = take_one(&work, PullMode::Lease { owner: 1 }).unwrap();
        assert!(work.reject(d.tag.unwrap(), false));
        let dead = take_one(&dlq, PullMode::NoAck).expect("dead-lettered");
        assert_eq!(&dead.msg.payload[..], b"body");
        assert!(
            dead.msg
                .props
                .as_ref()
                .unwrap()
                .amqp_headers()
                .unwrap()
                .contains_key("x-death")
        );
    }

    #[test]
    fn delivery_limit_dead_letters_instead_of_requeueing() {
        let v = vhost();
        let (dlq, _) = v
            .declare_queue("dlq", QueueOptions::default(), None)
            .unwrap();
        let opts = QueueOptions {
            delivery_limit: Some(1),
            dead_letter: Some(DeadLetterTarget {
                exchange: "".into(),
                routing_key: Some("dlq".into()),
            }),
            ..Default::default()
        };
        let (work, _) = v.declare_queue("work", opts, None).unwrap();
        v.publish_default("work", &msg("work"));
        for _ in 0..2 {
            let d = take_one(&work, PullMode::Lease { owner: 1 }).expect("delivered");
            work.reject(d.tag.unwrap(), true);
        }
        assert!(take_one(&work, PullMode::NoAck).is_none());
        assert!(take_one(&dlq, PullMode::NoAck).is_some());
    }

    #[test]
    fn priority_queue_delivers_highest_first() {
        let v = vhost();
        let opts = QueueOptions {
            max_priority: Some(5),
            ..Default::default()
        };
        let (q, _) = v.declare_queue("p", opts, None).unwrap();
        for (i, p) in [(1u64, 1u8), (2, 9), (3, 3)] {
            let mut m = (*msg("p")).clone();
            m.id = i;
            m.priority = p;
            v.publish_default("p", &Arc::new(m));
        }
        let order: Vec<u64> = (0..3)
            .filter_map(|_| take_one(&q, PullMode::NoAck))
            .map(|d| d.msg.id)
            .collect();
        assert_eq!(order, [2, 3, 1]);
    }

    #[test]
    fn auto_delete_exchange_goes_with_its_last_binding() {
        let v = vhost();
        let opts = ExchangeOptions {
            auto_delete: true,
            ..Default::default()
        };
        let (ex, _) = v
            .declare_exchange("tmp", ExchangeKind::Fanout, opts)
            .unwrap();
        let (q, _) = v.declare_queue("q", QueueOptions::default(), None).unwrap();
        v.bind_queue(&ex, &q, "", KeyForm::Amqp, BindingOptions::plain());
        v.unbind_queue(&ex, &q, "", KeyForm::Amqp, None);
        assert!(v.exchange("tmp").is_none());
        assert!(ex.is_deleted());
    }

    #[test]
    fn deleting_an_exchange_removes_bindings_to_it() {
        let v = vhost();
        let (a, _) = v
            .declare_exchange("a", ExchangeKind::Fanout, ExchangeOptions::default())
            .unwrap();
        let (b, _) = v
            .declare_exchange("b", ExchangeKind::Fanout, ExchangeOptions::default())
            .unwrap();
        v.bind_exchange(&a, &b, "", None);
        assert_eq!(a.binding_count(), 1);
        v.delete_exchange("b", false).unwrap();
        assert_eq!(a.binding_count(), 0);
        assert_eq!(
            v.delete_exchange("amq.topic", false)
                .unwrap_err()
                .reply_code(),
            403
        );
    }
    #[test]
    fn redrive_moves_a_message_received_too_often() {
        let v = vhost();
        let (dlq, _) = v
            .declare_queue("orders-dlq", QueueOptions::default(), None)
            .unwrap();
        let opts = QueueOptions {
            settings: crate::core::queue::LiveSettings {
                redrive: Some(crate::core::queue::Redrive {
                    max_receive_count: 2,
                    target: "orders-dlq".into(),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let (q, _) = v.declare_queue("orders", opts, None).unwrap();
        let original = msg("orders");
        q.send(&original, &Default::default());
        for _ in 0..2 {
            let d = take_one(
                &q,
                PullMode::Receive {
                    visibility: std::time::Duration::ZERO,
                },
            )
            .expect("received");
            q.change_visibility(d.tag.unwrap(), std::time::Duration::ZERO);
        }
        assert!(
            take_one(
                &q,
                PullMode::Receive {
                    visibility: std::time::Duration::ZERO
                }
            )
            .is_none()
        );
        let moved = take_one(&dlq, PullMode::NoAck).expect("in the dead-letter queue");
        assert_eq!(moved.msg.id, original.id, "the same message moved");
        assert_eq!(moved.msg.payload, original.payload);
        let source = moved
            .msg
            .props
            .as_ref()
            .and_then(|p| p.dead_letter_source.clone());
        assert_eq!(source.as_deref(), Some("orders"));
    }
}
