//! Deliveries to AMQP consumers: pull from core queues within each consumer's
//! prefetch credit and write basic.deliver, content header and body frames
//! into the connection's buffer, so one socket write carries many messages.

use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::ShortString;

use super::connection::{Conn, WRITE_HIGH_WATER};
use super::frame;
use crate::core::queue::{PullLimits, PullMode};
use crate::metrics::{DeliveryTally, Protocol};

/// Deliveries taken per pull.
const BATCH: usize = 64;

impl Conn {
    /// Pulls deliveries for every consumer until queues run dry, credit runs
    /// out, or the write buffer is full. Consumers of deleted queues are
    /// cancelled (with basic.cancel when the client understands it).
    pub(super) fn fill_outbound(&mut self) {
        // Deliveries and their latencies, added to the metrics once per fill.
        let mut tally = DeliveryTally::default();
        self.fill_outbound_counting(&mut tally);
        tally.flush(&self.ctx.core.metrics, Protocol::Amqp);
    }

    fn fill_outbound_counting(&mut self, tally: &mut DeliveryTally) {
        self.want_pull = false;
        let mut deliveries = Vec::with_capacity(BATCH);
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        let mut cancelled: Vec<(u16, String)> = Vec::new();
        for id in ids {
            let Some(ch) = self.channels.get(&id) else {
                continue;
            };
            if ch.closing || !ch.flow {
                continue;
            }
            for ci in 0..ch.consumers.len() {
                loop {
                    if self.wbuf.len() >= WRITE_HIGH_WATER {
                        return;
                    }
                    let Some(ch) = self.channels.get_mut(&id) else {
                        break;
                    };
                    let c = &ch.consumers[ci];
                    c.wakeup.take();
                    if c.queue.is_deleted() {
                        cancelled.push((id, c.tag.clone()));
                        break;
                    }
                    let credit = ch.credit(c);
                    if credit == 0 {
                        break;
                    }
                    let mode = if c.no_ack {
                        PullMode::NoAck
                    } else {
                        PullMode::Lease { owner: ch.owner }
                    };
                    let limits = PullLimits {
                        max: credit.min(BATCH),
                        max_leased: credit,
                    };
                    let queue = c.queue.clone();
                    let consumer_id = c.id;
                    let n = queue.pull(consumer_id, limits, mode, &mut deliveries);
                    for d in deliveries.drain(..) {
                        let Some(ch) = self.channels.get_mut(&id) else {
                            break;
                        };
                        let dtag = ch.next_dtag;
                        ch.next_dtag += 1;
                        let c = &mut ch.consumers[ci];
                        if let Some(qtag) = d.tag {
                            c.unacked += 1;
                            let serial = c.serial;
                            ch.unacked.push_back(super::channel::Unacked {
                                dtag,
                                queue: queue.clone(),
                                qtag,
                                consumer: serial,
                            });
                        }
                        let tag = ch.consumers[ci].tag.clone();
                        let key = self.routing_key_of(&d.msg);
                        frame::put_deliver(
                            &mut self.wbuf,
                            id,
                            &tag,
                            dtag,
                            d.redelivered,
                            &d.msg.exchange,
                            key.as_bytes(),
                        );
                        self.put_message_content(id, &d.msg);
                        tally.observe(&d);
                    }
                    if n < limits.max {
                        break;
                    }
                }
            }
        }
        for (id, tag) in cancelled {
            self.cancel_consumer(id, &tag);
            if self.caps.consumer_cancel_notify {
                frame::put_method(
                    &mut self.wbuf,
                    &mut self.scratch,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: ShortString::from(tag),
                        nowait: true,
                    })),
                );
            }
        }
    }
}
