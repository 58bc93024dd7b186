//! The sink's AMQP 0-9-1 side: the handshake (any PLAIN credentials), then
//! success for every setup method (channel.open, queue.declare with 0
//! messages, exchange.declare, queue.bind, queue.purge, basic.qos,
//! basic.consume, which never delivers, confirm.select, tx.*), and the
//! channel and connection close handshakes.
//!
//! basic.publish methods are recognised by their class and method ids and
//! counted without parsing; their content header and body frames are
//! skipped. On a channel in confirm mode, one basic.ack with `multiple` per
//! read confirms everything published so far.

use std::collections::BTreeMap;

use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, exchange, queue, tx};
use amq_protocol::types::{LongString, ShortString};
use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Counters;
use crate::amqp::{
    FRAME_MAX, FRAME_METHOD, PROTOCOL_HEADER, frame, parse_method, peer_properties, put_ack,
    put_method,
};
use crate::{Error, net};

/// Confirm state of one channel.
#[derive(Debug, Default)]
struct Channel {
    /// confirm.select was received.
    confirming: bool,
    /// Publishes received on it.
    published: u64,
    /// Highest publish confirmed.
    confirmed: u64,
}

/// One connection's state.
#[derive(Debug)]
struct Session {
    frame_max: usize,
    channels: BTreeMap<u16, Channel>,
    /// Counter for generated queue names and consumer tags.
    names: u64,
    /// connection.close or close-ok seen: write what is left and end.
    closing: bool,
}

/// Serves one connection until the client goes.
pub async fn serve(stream: TcpStream, counters: &Counters) -> Result<(), Error> {
    let (mut read, mut write) = stream.into_split();
    let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
    while rbuf.len() < PROTOCOL_HEADER.len() {
        net::fill(&mut read, &mut rbuf).await?;
    }
    if rbuf[..PROTOCOL_HEADER.len()] != PROTOCOL_HEADER[..] {
        // The spec's answer to a header it does not speak: its own, then close.
        write.write_all(PROTOCOL_HEADER).await?;
        return Err("not an AMQP 0-9-1 client".into());
    }
    rbuf.advance(PROTOCOL_HEADER.len());
    put_method(&mut wbuf, 0, start())?;
    let mut s = Session {
        frame_max: FRAME_MAX as usize,
        channels: BTreeMap::new(),
        names: 0,
        closing: false,
    };
    loop {
        tokio::select! {
            r = net::fill(&mut read, &mut rbuf) => {
                r?;
                let mut publishes = 0;
                while let Some(f) = frame(&rbuf, s.frame_max)? {
                    let len = f.len;
                    if f.kind == FRAME_METHOD {
                        if f.method_id() == (60, 40) {
                            publishes += 1;
                            if let Some(ch) = s.channels.get_mut(&f.channel) {
                                ch.published += 1;
                            }
                        } else {
                            let method = parse_method(f.payload)?;
                            let channel = f.channel;
                            answer(&mut s, channel, method, &mut wbuf)?;
                        }
                    }
                    // Content headers, bodies and heartbeats are dropped.
                    rbuf.advance(len);
                }
                counters.amqp_publishes.add(publishes);
                let mut confirms = 0;
                for (&id, ch) in s.channels.iter_mut() {
                    if ch.confirming && ch.published > ch.confirmed {
                        put_ack(&mut wbuf, id, ch.published, true);
                        ch.confirmed = ch.published;
                        confirms += 1;
                    }
                }
                counters.amqp_confirm_frames.add(confirms);
                if s.closing {
                    write.write_all(&wbuf).await?;
                    return Ok(());
                }
            }
            r = net::write_some(&mut write, &mut wbuf), if !wbuf.is_empty() => r?,
        }
    }
}

/// connection.start: 0-9-1, PLAIN, and the capabilities clients look for.
fn start() -> AMQPClass {
    let props = peer_properties(
        "tether-bench sink",
        &[
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "exchange_exchange_bindings",
            "per_consumer_qos",
            "authentication_failure_close",
        ],
    );
    AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: props,
        mechanisms: LongString::from("PLAIN AMQPLAIN"),
        locales: LongString::from("en_US"),
    }))
}

/// Answers one method other than basic.publish.
fn answer(s: &mut Session, ch: u16, method: AMQPClass, wbuf: &mut BytesMut) -> Result<(), Error> {
    use AMQPClass as C;
    let reply = match method {
        C::Connection(m) => match m {
            connection::AMQPMethod::StartOk(_) => Some(C::Connection(
                connection::AMQPMethod::Tune(connection::Tune {
                    channel_max: 2047,
                    frame_max: FRAME_MAX,
                    heartbeat: 0,
                }),
            )),
            connection::AMQPMethod::TuneOk(t) => {
                if t.frame_max > 0 {
                    s.frame_max = t.frame_max as usize;
                }
                None
            }
            connection::AMQPMethod::Open(_) => Some(C::Connection(connection::AMQPMethod::OpenOk(
                connection::OpenOk {},
            ))),
            connection::AMQPMethod::Close(_) => {
                s.closing = true;
                Some(C::Connection(connection::AMQPMethod::CloseOk(
                    connection::CloseOk {},
                )))
            }
            connection::AMQPMethod::CloseOk(_) => {
                s.closing = true;
                None
            }
            _ => None,
        },
        C::Channel(m) => match m {
            channel::AMQPMethod::Open(_) => {
                s.channels.insert(ch, Channel::default());
                Some(C::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})))
            }
            channel::AMQPMethod::Close(_) => {
                s.channels.remove(&ch);
                Some(C::Channel(channel::AMQPMethod::CloseOk(
                    channel::CloseOk {},
                )))
            }
            channel::AMQPMethod::Flow(f) => {
                Some(C::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                    active: f.active,
                })))
            }
            _ => None,
        },
        C::Confirm(confirm::AMQPMethod::Select(sel)) => {
            if let Some(c) = s.channels.get_mut(&ch) {
                c.confirming = true;
            }
            (!sel.nowait).then_some(C::Confirm(confirm::AMQPMethod::SelectOk(
                confirm::SelectOk {},
            )))
        }
        C::Queue(m) => match m {
            queue::AMQPMethod::Declare(d) => {
                let name = if d.queue.as_str().is_empty() {
                    s.names += 1;
                    ShortString::from(format!("amq.gen-sink-{}", s.names))
                } else {
                    d.queue
                };
                (!d.nowait).then_some(C::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: name,
                    message_count: 0,
                    consumer_count: 0,
                })))
            }
            queue::AMQPMethod::Bind(b) => {
                (!b.nowait).then_some(C::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})))
            }
            queue::AMQPMethod::Unbind(_) => {
                Some(C::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})))
            }
            queue::AMQPMethod::Purge(p) => {
                (!p.nowait).then_some(C::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                    message_count: 0,
                })))
            }
            queue::AMQPMethod::Delete(d) => {
                (!d.nowait).then_some(C::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                    message_count: 0,
                })))
            }
            _ => None,
        },
        C::Exchange(m) => match m {
            exchange::AMQPMethod::Declare(d) => (!d.nowait).then_some(C::Exchange(
                exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}),
            )),
            exchange::AMQPMethod::Delete(d) => (!d.nowait).then_some(C::Exchange(
                exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}),
            )),
            exchange::AMQPMethod::Bind(b) => (!b.nowait).then_some(C::Exchange(
                exchange::AMQPMethod::BindOk(exchange::BindOk {}),
            )),
            exchange::AMQPMethod::Unbind(u) => (!u.nowait).then_some(C::Exchange(
                exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
            )),
            _ => None,
        },
        C::Basic(m) => match m {
            basic::AMQPMethod::Qos(_) => Some(C::Basic(basic::AMQPMethod::QosOk(basic::QosOk {}))),
            basic::AMQPMethod::Consume(c) => {
                let tag = if c.consumer_tag.as_str().is_empty() {
                    s.names += 1;
                    ShortString::from(format!("amq.ctag-sink-{}", s.names))
                } else {
                    c.consumer_tag
                };
                (!c.nowait).then_some(C::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag,
                })))
            }
            basic::AMQPMethod::Cancel(c) => {
                (!c.nowait).then_some(C::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                    consumer_tag: c.consumer_tag,
                })))
            }
            // Acks, nacks, rejects (of nothing delivered) and the rest.
            _ => None,
        },
        C::Tx(m) => match m {
            tx::AMQPMethod::Select(_) => Some(C::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {}))),
            tx::AMQPMethod::Commit(_) => Some(C::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {}))),
            tx::AMQPMethod::Rollback(_) => {
                Some(C::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})))
            }
            _ => None,
        },
        _ => None,
    };
    if let Some(r) = reply {
        put_method(wbuf, ch, r)?;
    }
    Ok(())
}
