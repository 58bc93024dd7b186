//! AMQP channels: per-channel state and the methods of every class
//! (channel, exchange, queue, basic, confirm, tx) as core operations.
//!
//! A channel error closes only its channel (channel.close with the reply code
//! and the failing method); everything the channel held (unacknowledged
//! deliveries, consumers) is released so other consumers get the messages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::protocol::{AMQPClass, access, basic, channel, confirm, exchange, queue, tx};
use amq_protocol::types::ShortString;
use bytes::{Bytes, BytesMut};

use super::args;
use super::connection::{Conn, truncate};
use super::frame::{self, AmqpError, ContentHeader, FRAME_HEADER, RawFrame, Scope, code};
use crate::core::bytestr::ByteStr;
use crate::core::exchange::{BindingOptions, Exchange, ExchangeKind, ExchangeOptions};
use crate::core::message::{KeyForm, Message, MessageProperties, now_ms};
use crate::core::queue::{ConsumerId, PullLimits, PullMode, Queue, Wakeup};
use crate::core::vhost::{PublishOutcome, VHostError};
use crate::store::{Lsn, Store, tracked};

/// A message being assembled from publish, header and body frames.
#[derive(Debug)]
struct Pending {
    exchange: Option<Arc<Exchange>>,
    exchange_name: String,
    routing_key: String,
    mandatory: bool,
    header: Option<ContentHeader>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::One(b) => b.len(),
            Body::Many(b) => b.len(),
        }
    }

    fn push(&mut self, part: Bytes) {
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty => Body::One(part),
            Body::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + part.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&part);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&part);
                Body::Many(all)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        }
    }
}

/// An operation deferred by a transaction until commit.
#[derive(Debug)]
enum TxOp {
    Publish {
        exchange: Option<Arc<Exchange>>,
        msg: Arc<Message>,
        mandatory: bool,
    },
    Settle {
        delivery_tag: u64,
        multiple: bool,
        how: Settle,
    },
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Reject { requeue: bool },
}

/// A consumer on this channel.
#[derive(Debug)]
pub(super) struct Consumer {
    pub tag: String,
    pub serial: u64,
    pub queue: Arc<Queue>,
    pub id: ConsumerId,
    pub wakeup: Arc<Wakeup>,
    pub no_ack: bool,
    /// Per-consumer prefetch (0: unlimited).
    pub prefetch: u16,
    pub unacked: usize,
}

/// A delivery awaiting ack.
#[derive(Debug)]
pub(super) struct Unacked {
    pub dtag: u64,
    pub queue: Arc<Queue>,
    pub qtag: u64,
    /// Consumer serial, 0 for basic.get.
    pub consumer: u64,
}

/// One open channel.
#[derive(Debug)]
pub(super) struct Channel {
    pub id: u16,
    /// Lease owner id for this channel's deliveries.
    pub owner: u64,
    /// We sent channel.close and wait for close-ok; other frames are dropped.
    pub closing: bool,
    pending: Option<Pending>,
    pub confirm: bool,
    next_seq: u64,
    /// Confirms owed to the publisher, all positive, up to this sequence number.
    ack_upto: Option<u64>,
    /// Publishes whose confirm waits for the store: `(ticket, sequence
    /// number, negative)`, in order.
    unconfirmed: VecDeque<(Lsn, u64, bool)>,
    tx: Option<Vec<TxOp>>,
    pub consumers: Vec<Consumer>,
    next_serial: u64,
    /// Prefetch for consumers created from now on (basic.qos global=false).
    prefetch: u16,
    /// Channel-wide prefetch (basic.qos global=true).
    pub global_prefetch: u16,
    pub unacked: VecDeque<Unacked>,
    pub next_dtag: u64,
    /// channel.flow: deliveries allowed.
    pub flow: bool,
    /// The last queue declared, for methods that name the empty queue.
    last_queue: Option<String>,
}

impl Channel {
    fn new(id: u16, owner: u64) -> Self {
        Channel {
            id,
            owner,
            closing: false,
            pending: None,
            confirm: false,
            next_seq: 1,
            ack_upto: None,
            unconfirmed: VecDeque::new(),
            tx: None,
            consumers: Vec::new(),
            next_serial: 1,
            prefetch: 0,
            global_prefetch: 0,
            unacked: VecDeque::new(),
            next_dtag: 1,
            flow: true,
            last_queue: None,
        }
    }

    /// Writes the publisher confirms owed whose writes are durable (`done`):
    /// positive ones coalesced into one multiple-ack, a nack for a publish a
    /// queue refused or the store could not keep.
    pub fn flush_confirms(&mut self, buf: &mut BytesMut, done: Lsn, store: &dyn Store) {
        while let Some(&(lsn, seq, nack)) = self.unconfirmed.front() {
            if lsn > done {
                break;
            }
            self.unconfirmed.pop_front();
            if nack || (lsn != 0 && store.outcome(lsn).is_err()) {
                if let Some(upto) = self.ack_upto.take() {
                    frame::put_confirm(buf, self.id, true, upto, true);
                }
                frame::put_confirm(buf, self.id, false, seq, false);
            } else {
                self.ack_upto = Some(seq);
            }
        }
        if let Some(upto) = self.ack_upto.take() {
            frame::put_confirm(buf, self.id, true, upto, true);
        }
    }

    /// Whether confirms wait for the store.
    pub fn awaits_store(&self) -> bool {
        !self.unconfirmed.is_empty()
    }

    /// Owes a confirm for publish `seq`, sent once `lsn` is durable.
    fn owe_confirm(&mut self, lsn: Lsn, seq: u64, nack: bool) {
        if lsn == 0 && !nack && self.unconfirmed.is_empty() {
            self.ack_upto = Some(seq);
        } else {
            self.unconfirmed.push_back((lsn, seq, nack));
        }
    }

    /// Deliveries this consumer may still receive (`usize::MAX`: unlimited).
    pub fn credit(&self, c: &Consumer) -> usize {
        if c.no_ack {
            return usize::MAX;
        }
        let own = if c.prefetch == 0 {
            usize::MAX
        } else {
            usize::from(c.prefetch).saturating_sub(c.unacked)
        };
        let shared = if self.global_prefetch == 0 {
            usize::MAX
        } else {
            usize::from(self.global_prefetch).saturating_sub(self.unacked.len())
        };
        own.min(shared)
    }
}

fn method_ids(m: &AMQPClass) -> (u16, u16) {
    (m.get_amqp_class_id(), m.get_amqp_method_id())
}

fn vhost_error(e: VHostError) -> AmqpError {
    AmqpError::channel(e.reply_code(), e.to_string())
}

fn random_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::rng();
    let tail: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

/// Parses the AMQP `expiration` property (milliseconds as decimal text).
fn expiration(props: &basic::AMQPProperties) -> Result<Option<Instant>, AmqpError> {
    let Some(e) = props.expiration() else {
        return Ok(None);
    };
    let ms: u64 = e.as_str().parse().map_err(|_| {
        AmqpError::channel(
            code::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - invalid expiration '{}'", e.as_str()),
        )
    })?;
    Ok(Some(Instant::now() + Duration::from_millis(ms)))
}

impl Conn {
    /// Runs a declaration-like method whose reply may only go out once what
    /// it changed is durable: output from here on is held until then.
    fn after_durable<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let start = self.wbuf.len();
        let (r, lsn) = tracked(|| f(self));
        self.hold_output(lsn, start);
        r
    }

    fn reply(&mut self, channel: u16, method: AMQPClass) {
        frame::put_method(&mut self.wbuf, &mut self.scratch, channel, method);
    }

    fn channel_mut(&mut self, id: u16) -> Result<&mut Channel, AmqpError> {
        self.channels.get_mut(&id).ok_or_else(|| {
            AmqpError::connection(
                code::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - channel {id} is not open"),
            )
        })
    }

    /// Handles a method on channel `id` (not 0).
    pub(super) fn on_channel_method(
        &mut self,
        id: u16,
        method: AMQPClass,
    ) -> Result<(), AmqpError> {
        let (class_id, method_id) = method_ids(&method);
        if id > self.channel_max {
            return Err(AmqpError::connection(
                code::CHANNEL_ERROR,
                format!(
                    "CHANNEL_ERROR - channel {id} above channel_max {}",
                    self.channel_max
                ),
            )
            .at(class_id, method_id));
        }
        if let AMQPClass::Channel(channel::AMQPMethod::Open(_)) = method {
            if self.channels.contains_key(&id) {
                return Err(AmqpError::connection(
                    code::CHANNEL_ERROR,
                    format!("CHANNEL_ERROR - second channel.open on channel {id}"),
                )
                .at(class_id, method_id));
            }
            let owner = self.ctx.core.sessions.next_id();
            self.channels.insert(id, Channel::new(id, owner));
            self.reply(
                id,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            );
            return Ok(());
        }
        let ch = self
            .channel_mut(id)
            .map_err(|e| e.at(class_id, method_id))?;
        if ch.closing {
            if let AMQPClass::Channel(
                channel::AMQPMethod::CloseOk(_) | channel::AMQPMethod::Close(_),
            ) = method
            {
                self.drop_channel(id);
            }
            return Ok(());
        }
        if ch.pending.is_some() {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!("UNEXPECTED_FRAME - expected content header for class 60, got method {class_id}.{method_id}"),
            )
            .at(class_id, method_id));
        }
        self.dispatch(id, method).map_err(|e| {
            if e.class_id == 0 {
                e.at(class_id, method_id)
            } else {
                e
            }
        })
    }

    fn dispatch(&mut self, id: u16, method: AMQPClass) -> Result<(), AmqpError> {
        match method {
            AMQPClass::Channel(m) => self.on_channel_class(id, m),
            AMQPClass::Exchange(m) => self.after_durable(|c| c.on_exchange(id, m)),
            AMQPClass::Queue(m) => self.after_durable(|c| c.on_queue(id, m)),
            AMQPClass::Basic(m) => self.on_basic(id, m),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                let ch = self.channel_mut(id)?;
                if ch.tx.is_some() {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                    ));
                }
                ch.confirm = true;
                if !s.nowait {
                    self.reply(
                        id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(m) => self.after_durable(|c| c.on_tx(id, m)),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.reply(
                    id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Connection(_) => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - connection method on a channel",
            )),
            _ => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - method only a server may send",
            )),
        }
    }

    fn on_channel_class(&mut self, id: u16, m: channel::AMQPMethod) -> Result<(), AmqpError> {
        match m {
            channel::AMQPMethod::Close(_) => {
                self.reply(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                self.drop_channel(id);
                Ok(())
            }
            channel::AMQPMethod::CloseOk(_) => {
                self.drop_channel(id);
                Ok(())
            }
            channel::AMQPMethod::Flow(f) => {
                self.channel_mut(id)?.flow = f.active;
                self.want_pull = true;
                self.reply(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: f.active,
                    })),
                );
                Ok(())
            }
            channel::AMQPMethod::FlowOk(_) => Ok(()),
            _ => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - unexpected channel method",
            )),
        }
    }

    fn on_exchange(&mut self, id: u16, m: exchange::AMQPMethod) -> Result<(), AmqpError> {
        let vhost = self.vhost.clone();
        match m {
            exchange::AMQPMethod::Declare(d) => {
                let name = d.exchange.as_str();
                if d.passive {
                    if !name.is_empty() && vhost.exchange(name).is_none() {
                        return Err(AmqpError::channel(
                            code::NOT_FOUND,
                            format!(
                                "NOT_FOUND - no exchange '{name}' in vhost '{}'",
                                vhost.name()
                            ),
                        ));
                    }
                } else {
                    let kind = ExchangeKind::parse(d.kind.as_str()).ok_or_else(|| {
                        AmqpError::connection(
                            code::COMMAND_INVALID,
                            format!(
                                "COMMAND_INVALID - unknown exchange type '{}'",
                                d.kind.as_str()
                            ),
                        )
                    })?;
                    if name.is_empty() {
                        return Err(AmqpError::channel(
                            code::ACCESS_REFUSED,
                            "ACCESS_REFUSED - operation not permitted on the default exchange",
                        ));
                    }
                    let options = ExchangeOptions {
                        durable: d.durable,
                        auto_delete: d.auto_delete,
                        internal: d.internal,
                        alternate: args::alternate_exchange(&d.arguments)?,
                        args: d.arguments.clone(),
                    };
                    vhost
                        .declare_exchange(name, kind, options)
                        .map_err(vhost_error)?;
                }
                if !d.nowait {
                    self.reply(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                            exchange::DeclareOk {},
                        )),
                    );
                }
                Ok(())
            }
            exchange::AMQPMethod::Delete(d) => {
                match vhost.delete_exchange(d.exchange.as_str(), d.if_unused) {
                    Ok(()) | Err(VHostError::NotFound(_)) => {}
                    Err(e) => return Err(vhost_error(e)),
                }
                if !d.nowait {
                    self.reply(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                    );
                }
                Ok(())
            }
            exchange::AMQPMethod::Bind(b) => {
                let (source, dest) =
                    self.exchange_pair(b.source.as_str(), b.destination.as_str())?;
                let args = (!b.arguments.inner().is_empty()).then(|| b.arguments.clone());
                vhost.bind_exchange(&source, &dest, b.routing_key.as_str(), args);
                if !b.nowait {
                    self.reply(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                    );
                }
                Ok(())
            }
            exchange::AMQPMethod::Unbind(u) => {
                let (source, dest) =
                    self.exchange_pair(u.source.as_str(), u.destination.as_str())?;
                vhost.unbind_exchange(&source, &dest, u.routing_key.as_str(), Some(&u.arguments));
                if !u.nowait {
                    self.reply(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                    );
                }
                Ok(())
            }
            _ => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - method only a server may send",
            )),
        }
    }

    fn exchange_pair(
        &self,
        source: &str,
        dest: &str,
    ) -> Result<(Arc<Exchange>, Arc<Exchange>), AmqpError> {
        if source.is_empty() || dest.is_empty() {
            return Err(AmqpError::channel(
                code::ACCESS_REFUSED,
                "ACCESS_REFUSED - operation not permitted on the default exchange",
            ));
        }
        let find = |n: &str| {
            self.vhost.exchange(n).ok_or_else(|| {
                AmqpError::channel(
                    code::NOT_FOUND,
                    format!(
                        "NOT_FOUND - no exchange '{n}' in vhost '{}'",
                        self.vhost.name()
                    ),
                )
            })
        };
        Ok((find(source)?, find(dest)?))
    }

    /// The queue a method names (the channel's last declared queue for `""`).
    fn queue_name(&mut self, id: u16, name: &str) -> Result<String, AmqpError> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        self.channel_mut(id)?.last_queue.clone().ok_or_else(|| {
            AmqpError::channel(code::NOT_FOUND, "NOT_FOUND - no previously declared queue")
        })
    }

    fn on_queue(&mut self, id: u16, m: queue::AMQPMethod) -> Result<(), AmqpError> {
        let vhost = self.vhost.clone();
        let owner = Some(self.id);
        match m {
            queue::AMQPMethod::Declare(d) => {
                let (queue, created) = if d.passive {
                    let name = self.queue_name(id, d.queue.as_str())?;
                    (vhost.queue_for(&name, owner).map_err(vhost_error)?, false)
                } else {
                    let name = if d.queue.as_str().is_empty() {
                        random_name("amq.gen-")
                    } else {
                        let n = d.queue.as_str().to_owned();
                        if n.starts_with("amq.") && vhost.queue(&n).is_none() {
                            return Err(AmqpError::channel(
                                code::ACCESS_REFUSED,
                                format!(
                                    "ACCESS_REFUSED - queue name '{n}' contains reserved prefix 'amq.*'"
                                ),
                            ));
                        }
                        n
                    };
                    let options =
                        args::queue_options(d.durable, d.exclusive, d.auto_delete, &d.arguments)?;
                    vhost
                        .declare_queue(&name, options, owner)
                        .map_err(vhost_error)?
                };
                if created {
                    tracing::debug!(queue = %queue.name(), "queue declared");
                }
                let name = queue.name().to_string();
                self.channel_mut(id)?.last_queue = Some(name.clone());
                if !d.nowait {
                    self.reply(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                            queue: ShortString::from(name),
                            message_count: queue.ready_len() as u32,
                            consumer_count: queue.consumer_count() as u32,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Bind(b) => {
                let name = self.queue_name(id, b.queue.as_str())?;
                let q = vhost.queue_for(&name, owner).map_err(vhost_error)?;
                let ex = self.exchange_for_binding(b.exchange.as_str())?;
                let args = (!b.arguments.inner().is_empty()).then(|| b.arguments.clone());
                vhost.bind_queue_with_args(
                    &ex,
                    &q,
                    b.routing_key.as_str(),
                    KeyForm::Amqp,
                    BindingOptions::plain(),
                    args,
                );
                if !b.nowait {
                    self.reply(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Unbind(u) => {
                let name = self.queue_name(id, u.queue.as_str())?;
                let q = vhost.queue_for(&name, owner).map_err(vhost_error)?;
                let ex = self.exchange_for_binding(u.exchange.as_str())?;
                vhost.unbind_queue(
                    &ex,
                    &q,
                    u.routing_key.as_str(),
                    KeyForm::Amqp,
                    Some(&u.arguments),
                );
                self.reply(
                    id,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
                Ok(())
            }
            queue::AMQPMethod::Purge(p) => {
                let name = self.queue_name(id, p.queue.as_str())?;
                let q = vhost.queue_for(&name, owner).map_err(vhost_error)?;
                let n = q.purge();
                if !p.nowait {
                    self.reply(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n as u32,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(d) => {
                let name = self.queue_name(id, d.queue.as_str())?;
                let n = match vhost.delete_queue_checked(&name, owner, d.if_unused, d.if_empty) {
                    Ok(n) => n,
                    // Deleting what is not there succeeds, as in RabbitMQ.
                    Err(VHostError::NotFound(_)) => 0,
                    Err(e) => return Err(vhost_error(e)),
                };
                if !d.nowait {
                    self.reply(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                            message_count: n as u32,
                        })),
                    );
                }
                Ok(())
            }
            _ => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - method only a server may send",
            )),
        }
    }

    fn exchange_for_binding(&self, name: &str) -> Result<Arc<Exchange>, AmqpError> {
        if name.is_empty() {
            return Err(AmqpError::channel(
                code::ACCESS_REFUSED,
                "ACCESS_REFUSED - operation not permitted on the default exchange",
            ));
        }
        self.vhost.exchange(name).ok_or_else(|| {
            AmqpError::channel(
                code::NOT_FOUND,
                format!(
                    "NOT_FOUND - no exchange '{name}' in vhost '{}'",
                    self.vhost.name()
                ),
            )
        })
    }

    fn on_basic(&mut self, id: u16, m: basic::AMQPMethod) -> Result<(), AmqpError> {
        match m {
            basic::AMQPMethod::Publish(p) => {
                let name = p.exchange.as_str();
                let exchange = if name.is_empty() {
                    None
                } else {
                    let ex = self.vhost.exchange(name).ok_or_else(|| {
                        AmqpError::channel(
                            code::NOT_FOUND,
                            format!(
                                "NOT_FOUND - no exchange '{name}' in vhost '{}'",
                                self.vhost.name()
                            ),
                        )
                    })?;
                    if ex.internal {
                        return Err(AmqpError::channel(
                            code::ACCESS_REFUSED,
                            format!(
                                "ACCESS_REFUSED - cannot publish to internal exchange '{name}'"
                            ),
                        ));
                    }
                    Some(ex)
                };
                self.channel_mut(id)?.pending = Some(Pending {
                    exchange,
                    exchange_name: name.to_owned(),
                    routing_key: p.routing_key.to_string(),
                    mandatory: p.mandatory,
                    header: None,
                    body: Body::Empty,
                });
                Ok(())
            }
            basic::AMQPMethod::Qos(q) => {
                let ch = self.channel_mut(id)?;
                if q.global {
                    ch.global_prefetch = q.prefetch_count;
                } else {
                    ch.prefetch = q.prefetch_count;
                }
                self.want_pull = true;
                self.reply(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.on_consume(id, c),
            basic::AMQPMethod::Cancel(c) => {
                let tag = c.consumer_tag.as_str().to_owned();
                self.cancel_consumer(id, &tag);
                if !c.nowait {
                    self.reply(
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        })),
                    );
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.on_get(id, g),
            basic::AMQPMethod::Ack(a) => {
                self.settle_or_defer(id, a.delivery_tag, a.multiple, Settle::Ack)
            }
            basic::AMQPMethod::Reject(r) => self.settle_or_defer(
                id,
                r.delivery_tag,
                false,
                Settle::Reject { requeue: r.requeue },
            ),
            basic::AMQPMethod::Nack(n) => self.settle_or_defer(
                id,
                n.delivery_tag,
                n.multiple,
                Settle::Reject { requeue: n.requeue },
            ),
            basic::AMQPMethod::Recover(_) => {
                self.recover(id)?;
                self.reply(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(_) => self.recover(id),
            _ => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - method only a server may send",
            )),
        }
    }

    fn on_consume(&mut self, id: u16, c: basic::Consume) -> Result<(), AmqpError> {
        let name = self.queue_name(id, c.queue.as_str())?;
        let q = self
            .vhost
            .queue_for(&name, Some(self.id))
            .map_err(vhost_error)?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            random_name("amq.ctag-")
        } else {
            c.consumer_tag.as_str().to_owned()
        };
        let ch = self.channel_mut(id)?;
        if ch.consumers.iter().any(|x| x.tag == tag) {
            return Err(AmqpError::connection(
                code::NOT_ALLOWED,
                format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let wakeup = Wakeup::new(self.notify.clone());
        let Some(consumer_id) = q.attach_checked(wakeup.clone(), c.exclusive) else {
            return Err(AmqpError::channel(
                code::ACCESS_REFUSED,
                format!(
                    "ACCESS_REFUSED - queue '{name}' in vhost '{}' in exclusive use",
                    self.vhost.name()
                ),
            ));
        };
        let ch = self.channel_mut(id)?;
        let serial = ch.next_serial;
        ch.next_serial += 1;
        let prefetch = ch.prefetch;
        ch.consumers.push(Consumer {
            tag: tag.clone(),
            serial,
            queue: q,
            id: consumer_id,
            wakeup,
            no_ack: c.no_ack,
            prefetch,
            unacked: 0,
        });
        if !c.nowait {
            self.reply(
                id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: ShortString::from(tag),
                })),
            );
        }
        self.want_pull = true;
        Ok(())
    }

    /// Removes a consumer; an auto-delete queue goes with its last consumer.
    pub(super) fn cancel_consumer(&mut self, id: u16, tag: &str) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(at) = ch.consumers.iter().position(|c| c.tag == tag) else {
            return;
        };
        let c = ch.consumers.remove(at);
        let remaining = c.queue.detach(c.id);
        if remaining == 0 && c.queue.options().auto_delete {
            self.vhost.delete_queue(c.queue.name());
        }
    }

    fn on_get(&mut self, id: u16, g: basic::Get) -> Result<(), AmqpError> {
        let name = self.queue_name(id, g.queue.as_str())?;
        let q = self
            .vhost
            .queue_for(&name, Some(self.id))
            .map_err(vhost_error)?;
        let ch = self.channel_mut(id)?;
        let mode = if g.no_ack {
            PullMode::NoAck
        } else {
            PullMode::Lease { owner: ch.owner }
        };
        let mut out = Vec::with_capacity(1);
        q.pull(
            0,
            PullLimits {
                max: 1,
                max_leased: 1,
            },
            mode,
            &mut out,
        );
        let Some(d) = out.pop() else {
            self.reply(
                id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let dtag = ch.next_dtag;
        ch.next_dtag += 1;
        if let Some(qtag) = d.tag {
            ch.unacked.push_back(Unacked {
                dtag,
                queue: q.clone(),
                qtag,
                consumer: 0,
            });
        }
        let remaining = q.ready_len() as u32;
        let mut tally = crate::metrics::DeliveryTally::default();
        tally.observe(&d);
        tally.flush(&self.ctx.core.metrics, crate::metrics::Protocol::Amqp);
        let msg = d.msg.clone();
        let key = self.routing_key_of(&msg);
        frame::put_get_ok(
            &mut self.wbuf,
            id,
            dtag,
            d.redelivered,
            &msg.exchange,
            key.as_bytes(),
            remaining,
        );
        self.put_message_content(id, &msg);
        Ok(())
    }

    /// The routing key of a message in AMQP spelling.
    pub(super) fn routing_key_of(&mut self, msg: &Message) -> String {
        match msg.key_form {
            KeyForm::Amqp => msg.routing_key.to_string(),
            KeyForm::Mqtt => {
                crate::core::exchange::swap_separators_into(
                    &msg.routing_key,
                    &mut self.key_scratch,
                );
                self.key_scratch.clone()
            }
        }
    }

    /// Writes a message's content header and body frames.
    pub(super) fn put_message_content(&mut self, channel: u16, msg: &Message) {
        let expiration_ms = msg
            .expires_at
            .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64);
        let props = match &msg.props {
            Some(p) => p.amqp_raw(msg.persistent, expiration_ms),
            None => plain_properties(msg.persistent, expiration_ms),
        };
        frame::put_content(
            &mut self.wbuf,
            channel,
            &props,
            &msg.payload,
            self.frame_max,
        );
    }

    fn settle_or_defer(
        &mut self,
        id: u16,
        delivery_tag: u64,
        multiple: bool,
        how: Settle,
    ) -> Result<(), AmqpError> {
        let ch = self.channel_mut(id)?;
        if let Some(ops) = &mut ch.tx {
            ops.push(TxOp::Settle {
                delivery_tag,
                multiple,
                how,
            });
            return Ok(());
        }
        self.settle(id, delivery_tag, multiple, how)
    }

    /// Acks or rejects deliveries (`multiple`: every one up to the tag; tag 0
    /// with `multiple`: all outstanding).
    fn settle(
        &mut self,
        id: u16,
        delivery_tag: u64,
        multiple: bool,
        how: Settle,
    ) -> Result<(), AmqpError> {
        let ch = self.channel_mut(id)?;
        let taken: Vec<Unacked> = if multiple {
            let upto = if delivery_tag == 0 {
                u64::MAX
            } else {
                delivery_tag
            };
            if delivery_tag != 0 && !ch.unacked.iter().any(|u| u.dtag == delivery_tag) {
                return Err(unknown_tag(delivery_tag));
            }
            let n = ch.unacked.partition_point(|u| u.dtag <= upto);
            ch.unacked.drain(..n).collect()
        } else {
            let Ok(at) = ch.unacked.binary_search_by_key(&delivery_tag, |u| u.dtag) else {
                return Err(unknown_tag(delivery_tag));
            };
            ch.unacked.remove(at).into_iter().collect()
        };
        for u in taken.iter().rev() {
            if u.consumer != 0
                && let Some(c) = ch.consumers.iter_mut().find(|c| c.serial == u.consumer)
            {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        // Requeued messages go back newest first so they keep their order.
        for u in taken.iter().rev() {
            match how {
                Settle::Ack => {
                    u.queue.ack(u.qtag);
                }
                Settle::Reject { requeue } => {
                    u.queue.reject(u.qtag, requeue);
                }
            }
        }
        self.want_pull = true;
        Ok(())
    }

    fn recover(&mut self, id: u16) -> Result<(), AmqpError> {
        let ch = self.channel_mut(id)?;
        let owner = ch.owner;
        let all: Vec<Unacked> = ch.unacked.drain(..).collect();
        for c in &mut ch.consumers {
            c.unacked = 0;
        }
        release(&all, owner);
        self.want_pull = true;
        Ok(())
    }

    fn on_tx(&mut self, id: u16, m: tx::AMQPMethod) -> Result<(), AmqpError> {
        match m {
            tx::AMQPMethod::Select(_) => {
                let ch = self.channel_mut(id)?;
                if ch.confirm {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                    ));
                }
                if ch.tx.is_none() {
                    ch.tx = Some(Vec::new());
                }
                self.reply(id, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
                let ch = self.channel_mut(id)?;
                let Some(ops) = ch.tx.replace(Vec::new()) else {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                };
                for op in ops {
                    match op {
                        TxOp::Publish {
                            exchange,
                            msg,
                            mandatory,
                        } => {
                            let outcome = self.route(exchange.as_ref(), &msg);
                            if mandatory && outcome.routed == 0 {
                                self.put_return(id, &msg);
                            }
                            self.apply_rules(exchange.as_ref(), &msg);
                        }
                        TxOp::Settle {
                            delivery_tag,
                            multiple,
                            how,
                        } => self.settle(id, delivery_tag, multiple, how)?,
                    }
                }
                self.reply(id, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})));
                Ok(())
            }
            tx::AMQPMethod::Rollback(_) => {
                let ch = self.channel_mut(id)?;
                if ch.tx.replace(Vec::new()).is_none() {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                }
                self.reply(
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
                Ok(())
            }
            _ => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "COMMAND_INVALID - method only a server may send",
            )),
        }
    }

    /// Handles a content header or body frame.
    pub(super) fn on_content(&mut self, f: RawFrame) -> Result<(), AmqpError> {
        let max = self.ctx.config.max_message_size.0;
        let ch = self.channel_mut(f.channel)?;
        if ch.closing {
            return Ok(());
        }
        let Some(pending) = ch.pending.as_mut() else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!(
                    "UNEXPECTED_FRAME - content {} without basic.publish",
                    if f.kind == FRAME_HEADER {
                        "header"
                    } else {
                        "body"
                    }
                ),
            ));
        };
        if f.kind == FRAME_HEADER {
            if pending.header.is_some() {
                return Err(AmqpError::connection(
                    code::UNEXPECTED_FRAME,
                    "UNEXPECTED_FRAME - second content header",
                ));
            }
            let header = frame::parse_header(&f.payload)?;
            if header.class_id != 60 {
                return Err(AmqpError::connection(
                    code::UNEXPECTED_FRAME,
                    "UNEXPECTED_FRAME - content header of a class other than basic",
                ));
            }
            if header.body_size > max {
                ch.pending = None;
                return Err(AmqpError::channel(
                    code::PRECONDITION_FAILED,
                    format!(
                        "PRECONDITION_FAILED - message size {} is larger than configured max size {max}",
                        header.body_size
                    ),
                ));
            }
            let done = header.body_size == 0;
            pending.header = Some(header);
            if done {
                return self.complete_publish(f.channel);
            }
            return Ok(());
        }
        let Some(header) = &pending.header else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "UNEXPECTED_FRAME - content body without a content header",
            ));
        };
        let expected = header.body_size;
        pending.body.push(f.payload);
        let got = pending.body.len() as u64;
        if got > expected {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!(
                    "UNEXPECTED_FRAME - content body of {got} bytes exceeds the announced {expected}"
                ),
            ));
        }
        if got == expected {
            return self.complete_publish(f.channel);
        }
        Ok(())
    }

    fn complete_publish(&mut self, id: u16) -> Result<(), AmqpError> {
        let ch = self.channel_mut(id)?;
        let Some(p) = ch.pending.take() else {
            return Ok(());
        };
        let Some(header) = p.header else {
            return Ok(());
        };
        if let Some(uid) = header.properties.user_id()
            && uid.as_str() != self.user
        {
            return Err(AmqpError::channel(
                code::PRECONDITION_FAILED,
                format!(
                    "PRECONDITION_FAILED - user_id property set to '{}' but authenticated user was '{}'",
                    uid.as_str(),
                    self.user
                ),
            )
            .at(60, 40));
        }
        let expires_at = expiration(&header.properties)?;
        let persistent = *header.properties.delivery_mode() == Some(2);
        let priority = header.properties.priority().unwrap_or(0);
        let props = if header.raw_properties[..] == [0, 0] {
            None
        } else {
            Some(Box::new(MessageProperties::from_amqp(
                header.raw_properties,
                header.properties,
            )))
        };
        let msg = Arc::new(Message {
            id: self.ctx.core.ids.next(),
            routing_key: ByteStr::from(p.routing_key),
            key_form: KeyForm::Amqp,
            exchange: ByteStr::from(p.exchange_name),
            payload: p.body.into_bytes(),
            // Persistent messages are at-least-once (QoS 1 to MQTT subscribers),
            // transient ones best-effort (QoS 0), as RabbitMQ maps them.
            qos: u8::from(persistent),
            retain: false,
            persistent,
            priority,
            published_at_ms: now_ms(),
            expires_at,
            origin: self.id,
            props,
        });
        let ch = self.channel_mut(id)?;
        if let Some(ops) = &mut ch.tx {
            ops.push(TxOp::Publish {
                exchange: p.exchange,
                msg,
                mandatory: p.mandatory,
            });
            return Ok(());
        }
        let confirm = self.channel_mut(id)?.confirm;
        if confirm && persistent && self.ctx.core.store.health().is_err() {
            // Refused (nack) rather than confirmed without being kept.
            let ch = self.channel_mut(id)?;
            let seq = ch.next_seq;
            ch.next_seq += 1;
            ch.owe_confirm(0, seq, true);
            return Ok(());
        }
        let (outcome, lsn) = tracked(|| {
            let outcome = self.route(p.exchange.as_ref(), &msg);
            self.apply_rules(p.exchange.as_ref(), &msg);
            outcome
        });
        if p.mandatory && outcome.routed == 0 {
            self.put_return(id, &msg);
        }
        let ch = self.channel_mut(id)?;
        if ch.confirm {
            let seq = ch.next_seq;
            ch.next_seq += 1;
            ch.owe_confirm(lsn, seq, outcome.rejected > 0);
        }
        Ok(())
    }

    /// Topic rules see publishes to the default vhost's `amq.topic`, as they
    /// see MQTT publishes.
    fn apply_rules(&self, exchange: Option<&Arc<Exchange>>, msg: &Message) {
        let core = &self.ctx.core;
        if !core.rules.is_empty()
            && exchange.is_some_and(|e| Arc::ptr_eq(e, core.vhost.amq_topic()))
        {
            core.rules.apply(core, msg, &self.user);
        }
    }

    fn route(&mut self, exchange: Option<&Arc<Exchange>>, msg: &Arc<Message>) -> PublishOutcome {
        match exchange {
            None => self.vhost.publish_default(&msg.routing_key, msg),
            Some(ex) => self.vhost.publish(ex, msg, &mut self.route),
        }
    }

    fn put_return(&mut self, id: u16, msg: &Message) {
        let key = self.routing_key_of(msg);
        frame::put_return(
            &mut self.wbuf,
            id,
            code::NO_ROUTE,
            "NO_ROUTE",
            &msg.exchange,
            key.as_bytes(),
        );
        self.put_message_content(id, msg);
    }

    /// Writes the confirms every channel owes (as far as the store allows).
    pub(super) fn flush_confirms(&mut self) {
        let done = *self.durable.borrow_and_update();
        let mut buf = std::mem::take(&mut self.wbuf);
        let store = self.ctx.core.store.clone();
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&mut buf, done, &*store);
        }
        self.wbuf = buf;
    }

    /// Raises a channel exception: channel.close, and everything the channel
    /// held is released.
    pub(super) fn close_channel_with(&mut self, id: u16, e: AmqpError) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if ch.closing {
            return;
        }
        tracing::debug!(peer = %self.peer, channel = id, code = e.code, reason = %e.text, "amqp channel error");
        ch.closing = true;
        ch.pending = None;
        self.release_channel(id);
        let method = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: e.code,
            reply_text: ShortString::from(truncate(&e.text, 255)),
            class_id: e.class_id,
            method_id: e.method_id,
        }));
        self.reply(id, method);
        debug_assert_eq!(e.scope, Scope::Channel);
    }

    /// Releases a channel's consumers and unacknowledged deliveries.
    fn release_channel(&mut self, id: u16) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let owner = ch.owner;
        let unacked: Vec<Unacked> = ch.unacked.drain(..).collect();
        let tags: Vec<String> = ch.consumers.iter().map(|c| c.tag.clone()).collect();
        for tag in tags {
            self.cancel_consumer(id, &tag);
        }
        release(&unacked, owner);
    }

    /// Forgets a channel entirely (after close / close-ok, or connection end).
    pub(super) fn drop_channel(&mut self, id: u16) {
        self.release_channel(id);
        self.channels.remove(&id);
    }
}

/// Returns every listed delivery to its queue, in order.
fn release(unacked: &[Unacked], owner: u64) {
    let mut queues: Vec<&Arc<Queue>> = Vec::new();
    for u in unacked {
        if !queues.iter().any(|q| Arc::ptr_eq(q, &u.queue)) {
            queues.push(&u.queue);
        }
    }
    for q in queues {
        q.release_owner(owner);
    }
}

fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::channel(
        code::PRECONDITION_FAILED,
        format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
    )
}

/// Properties for a message without any: nothing, or just the delivery mode.
fn plain_properties(persistent: bool, expiration_ms: Option<u64>) -> Bytes {
    match (persistent, expiration_ms) {
        (false, None) => Bytes::from_static(&[0, 0]),
        (true, None) => Bytes::from_static(&[0x10, 0x00, 2]),
        (p, e) => crate::core::props::plain_amqp_properties(p, e),
    }
}
