//! The connection to the broker in either MQTT version, as the poll task
//! needs it: events in, acks and subscriptions out.
//!
//! rumqttc has a client and event loop per version (`rumqttc` for 3.1.1,
//! `rumqttc::v5` for 5) with different packet types; [`Link`] puts both
//! behind one small surface, so the poll loop in `client.rs` is written
//! once. MQTT 5 is the default: its Receive Maximum lets floodguard, not the
//! broker's configuration, decide how many messages travel unacknowledged
//! (Mosquitto's `max_inflight_messages` of 20 held every 3.1.1 round trip to
//! a handful of messages — docs/performance.md).

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as p5;

use crate::config::{MqttProtocol, MqttSection};

/// A message as the worker needs it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    /// The packet id to acknowledge; `None` for QoS 0.
    pub pkid: Option<u16>,
}

impl Message {
    /// The topic as text (brokers check it is UTF-8; an invalid one reads as "").
    pub fn topic(&self) -> &str {
        std::str::from_utf8(&self.topic).unwrap_or("")
    }
}

/// What the event loop brought.
#[derive(Debug)]
pub enum Ev {
    Publish(Message),
    ConnAck {
        session_present: bool,
    },
    /// Per filter, in the order subscribed: did the broker take it?
    SubAck(Vec<bool>),
    /// An acknowledgement left for the broker.
    PubAckSent,
    /// The disconnect left for the broker.
    DisconnectSent,
    Other,
}

/// The client half (requests) and the event loop, in one MQTT version.
// One value per broker connection, moved once into the poll task: boxing
// the larger client would only add an indirection on every poll.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    V311(rumqttc::AsyncClient, rumqttc::EventLoop),
    V5(rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop),
}

/// A request could not be queued (rumqttc's request channel is full or closed).
#[derive(Debug, Clone, Copy)]
pub struct Full;

impl Link {
    /// Builds the client (no connection yet: the first poll connects).
    pub fn new(m: &MqttSection, request_capacity: usize) -> Result<Link, String> {
        Ok(match m.protocol {
            MqttProtocol::V311 => {
                let (c, e) = rumqttc::AsyncClient::new(super::options::options_v311(m)?, request_capacity);
                Link::V311(c, e)
            }
            MqttProtocol::V5 => {
                let (c, e) = rumqttc::v5::AsyncClient::new(super::options::options_v5(m)?, request_capacity);
                Link::V5(c, e)
            }
        })
    }

    /// The next event; connects (again) when needed.
    pub async fn poll(&mut self) -> Result<Ev, String> {
        match self {
            Link::V311(_, e) => e.poll().await.map(ev_v311).map_err(|e| e.to_string()),
            Link::V5(_, e) => e.poll().await.map(ev_v5).map_err(|e| e.to_string()),
        }
    }

    /// Queues the acknowledgement of a QoS 1 message, never waiting.
    pub fn try_ack(&self, pkid: u16) -> Result<(), Full> {
        match self {
            Link::V311(c, _) => {
                let mut p = rumqttc::Publish::new("", rumqttc::QoS::AtLeastOnce, Vec::<u8>::new());
                p.pkid = pkid;
                c.try_ack(&p).map_err(|_| Full)
            }
            Link::V5(c, _) => {
                let mut p =
                    p5::Publish::new("", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, Vec::<u8>::new(), None);
                p.pkid = pkid;
                c.try_ack(&p).map_err(|_| Full)
            }
        }
    }

    /// Subscribes to every filter at QoS 1, in one packet.
    pub fn try_subscribe(&self, filters: &[String]) -> Result<(), Full> {
        match self {
            Link::V311(c, _) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce)),
                )
                .map_err(|_| Full),
            Link::V5(c, _) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| p5::Filter::new(f.clone(), rumqttc::v5::mqttbytes::QoS::AtLeastOnce)),
                )
                .map_err(|_| Full),
        }
    }

    pub fn try_unsubscribe(&self, filter: &str) -> Result<(), Full> {
        match self {
            Link::V311(c, _) => c.try_unsubscribe(filter).map_err(|_| Full),
            Link::V5(c, _) => c.try_unsubscribe(filter).map_err(|_| Full),
        }
    }

    pub fn try_disconnect(&self) -> Result<(), Full> {
        match self {
            Link::V311(c, _) => c.try_disconnect().map_err(|_| Full),
            Link::V5(c, _) => c.try_disconnect().map_err(|_| Full),
        }
    }
}

fn ev_v311(e: rumqttc::Event) -> Ev {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    match e {
        Event::Incoming(Packet::Publish(p)) => Ev::Publish(Message {
            topic: Bytes::from(p.topic),
            payload: p.payload,
            pkid: (p.qos != QoS::AtMostOnce).then_some(p.pkid),
        }),
        Event::Incoming(Packet::ConnAck(a)) => Ev::ConnAck { session_present: a.session_present },
        Event::Incoming(Packet::SubAck(s)) => Ev::SubAck(
            s.return_codes.iter().map(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)).collect(),
        ),
        Event::Outgoing(Outgoing::PubAck(_)) => Ev::PubAckSent,
        Event::Outgoing(Outgoing::Disconnect) => Ev::DisconnectSent,
        _ => Ev::Other,
    }
}

fn ev_v5(e: rumqttc::v5::Event) -> Ev {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    match e {
        Event::Incoming(p5::Packet::Publish(p)) => Ev::Publish(Message {
            topic: p.topic,
            payload: p.payload,
            pkid: (p.qos != QoS::AtMostOnce).then_some(p.pkid),
        }),
        Event::Incoming(p5::Packet::ConnAck(a)) => Ev::ConnAck { session_present: a.session_present },
        Event::Incoming(p5::Packet::SubAck(s)) => Ev::SubAck(
            s.return_codes.iter().map(|c| matches!(c, p5::SubscribeReasonCode::Success(_))).collect(),
        ),
        Event::Outgoing(Outgoing::PubAck(_)) => Ev::PubAckSent,
        Event::Outgoing(Outgoing::Disconnect) => Ev::DisconnectSent,
        _ => Ev::Other,
    }
}
