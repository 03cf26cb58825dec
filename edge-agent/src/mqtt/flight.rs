//! Which of our QoS 1 publishes the broker has acknowledged: a pure state machine fed with
//! rumqttc's events, as rumqttc's own `state.rs` is. rumqttc assigns packet ids when it sends
//! a publish and reports `Outgoing::Publish(pkid)` in the order the publishes were handed to
//! it, so the n-th report belongs to the n-th publish handed over; a PUBACK then names the
//! packet id.

use std::collections::{BTreeMap, VecDeque};

/// What a publish was, so that its PUBACK can be acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A status from the outbox row with this id: delete the row on PUBACK.
    Status(u64),
    Presence,
    Response,
}

/// Our publishes between being handed to rumqttc and their PUBACK.
#[derive(Debug, Default)]
pub struct Flight {
    /// Handed over, packet id not known yet, oldest first.
    handed: VecDeque<Tag>,
    /// Sent with this packet id, waiting for the PUBACK.
    sent: BTreeMap<u16, Tag>,
    /// Held back by rumqttc because its packet id was still in use (out-of-order PUBACKs).
    collided: Option<(u16, Tag)>,
}

impl Flight {
    /// A publish was handed to rumqttc.
    pub fn handed(&mut self, tag: Tag) {
        self.handed.push_back(tag);
    }

    /// rumqttc sent a publish with `pkid`: the oldest one handed over, unless it is a resend
    /// of a publish already known (a resumed session) or the one held back by a collision.
    pub fn sent(&mut self, pkid: u16) {
        if pkid == 0 || self.sent.contains_key(&pkid) {
            return;
        }
        if let Some((held, tag)) = self.collided {
            if held == pkid {
                self.collided = None;
                self.sent.insert(pkid, tag);
                return;
            }
        }
        if let Some(tag) = self.handed.pop_front() {
            self.sent.insert(pkid, tag);
        }
    }

    /// rumqttc held the oldest publish handed over back: `pkid` is still in use.
    pub fn collided(&mut self, pkid: u16) {
        if let Some(tag) = self.handed.pop_front() {
            self.collided = Some((pkid, tag));
        }
    }

    /// The broker acknowledged `pkid`: what it was, if it was ours.
    pub fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.sent.remove(&pkid)
    }

    /// Publishes not acknowledged yet.
    pub fn outstanding(&self) -> usize {
        self.handed.len() + self.sent.len() + usize::from(self.collided.is_some())
    }

    /// The broker has no session for us any more: rumqttc dropped every unacknowledged
    /// publish, so they are all forgotten here too (the outbox rows stay, to be sent again).
    pub fn reset(&mut self) {
        *self = Flight::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_puback_names_the_publish_it_acknowledges() {
        let mut flight = Flight::default();
        flight.handed(Tag::Status(7));
        flight.handed(Tag::Response);
        flight.handed(Tag::Status(8));
        for pkid in [1, 2, 3] {
            flight.sent(pkid);
        }
        assert_eq!(flight.outstanding(), 3);
        assert_eq!(flight.acked(3), Some(Tag::Status(8)));
        assert_eq!(flight.acked(1), Some(Tag::Status(7)));
        assert_eq!(flight.acked(1), None, "a second ack is not ours");
        assert_eq!(flight.acked(2), Some(Tag::Response));
        assert_eq!(flight.outstanding(), 0);
    }

    #[test]
    fn a_publish_resent_after_a_resumed_session_keeps_its_tag() {
        let mut flight = Flight::default();
        flight.handed(Tag::Status(1));
        flight.sent(5);
        flight.handed(Tag::Status(2));
        // The link drops; the session is resumed; rumqttc resends pkid 5 first, then sends
        // the second publish.
        flight.sent(5);
        flight.sent(6);
        assert_eq!(flight.acked(5), Some(Tag::Status(1)));
        assert_eq!(flight.acked(6), Some(Tag::Status(2)));
    }

    #[test]
    fn a_collided_publish_gets_its_tag_once_the_old_one_is_acknowledged() {
        let mut flight = Flight::default();
        flight.handed(Tag::Status(1));
        flight.sent(1);
        flight.handed(Tag::Status(2));
        flight.collided(1);
        assert_eq!(flight.outstanding(), 2);
        assert_eq!(flight.acked(1), Some(Tag::Status(1)));
        flight.sent(1);
        assert_eq!(flight.acked(1), Some(Tag::Status(2)));
        assert_eq!(flight.outstanding(), 0);
    }

    #[test]
    fn a_lost_session_forgets_every_publish() {
        let mut flight = Flight::default();
        flight.handed(Tag::Status(1));
        flight.sent(1);
        flight.handed(Tag::Presence);
        flight.reset();
        assert_eq!(flight.outstanding(), 0);
        assert_eq!(flight.acked(1), None);
        flight.handed(Tag::Status(1));
        flight.sent(1);
        assert_eq!(flight.acked(1), Some(Tag::Status(1)));
    }

    #[test]
    fn reports_for_publishes_that_are_not_ours_change_nothing() {
        let mut flight = Flight::default();
        flight.sent(0);
        flight.sent(4);
        assert_eq!(flight.outstanding(), 0);
        assert_eq!(flight.acked(4), None);
    }
}
