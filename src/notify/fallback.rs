//! When a message did not — or may not have — reached its person: what a
//! receipt means for the next step, and which channel an urgent notice
//! takes instead. Pure and table-tested; `deliver` and `receipts` act on
//! the answers.

use std::time::Duration;

use super::classify::{Receipt, Report};
use crate::config::FallbackChannel;
use crate::level::Level;
use crate::reading::TimestampNs;

/// The ways a member (and their team) can be reached, on channels that are
/// configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    pub sms: bool,
    pub email: bool,
    pub voice: bool,
    /// The team has group robots.
    pub robot: bool,
}

/// The outbox channel names a fallback channel stands for.
pub fn channel_name(c: FallbackChannel) -> &'static str {
    match c {
        FallbackChannel::Voice => "voice",
        FallbackChannel::Robot => "robot",
        FallbackChannel::Email => "email",
        FallbackChannel::Sms => "sms",
    }
}

/// The channel an urgent notice takes when `tried` channels could not carry
/// it: the first of `order` the member has, not tried yet (a call only at
/// `voice_levels`). None: the next person in the chain.
pub fn next_channel(
    order: &[FallbackChannel],
    level: Option<Level>,
    voice_levels: &[Level],
    reach: Reach,
    tried: &[&str],
) -> Option<FallbackChannel> {
    order.iter().copied().find(|c| {
        let name = channel_name(*c);
        let has = match c {
            FallbackChannel::Voice => reach.voice && level.is_some_and(|l| voice_levels.contains(&l)),
            FallbackChannel::Robot => reach.robot,
            FallbackChannel::Email => reach.email,
            FallbackChannel::Sms => reach.sms,
        };
        has && !tried.contains(&name)
    })
}

/// What comes after a receipt query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to do for this message.
    Done,
    /// Ask again then.
    Poll(TimestampNs),
    /// It counts as not sent: the next channel (or person) is tried.
    Fallback,
    /// The provider never took it (its answer was lost on the way): send
    /// it again, with the same idempotency key.
    Resend,
}

/// A receipt query's circumstances.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// A Ⅱ/Ⅰ notice.
    pub urgent: bool,
    /// The send's answer was lost (the row is `unknown`), so the provider
    /// may or may not have taken it.
    pub answer_lost: bool,
    /// The provider lists a message from the moment it takes it (Aliyun's
    /// QuerySendDetails, waiting receipts included): not found means not
    /// taken. Tencent reports a message only with its receipt.
    pub lists_waiting: bool,
    /// When it was sent (or the send cut off).
    pub since: TimestampNs,
    pub now: TimestampNs,
    pub poll: Duration,
    /// Not delivered within this: counts as not sent.
    pub timeout: Duration,
}

/// How long a provider that lists waiting messages may take to show a
/// message it took, before "not found" means it never did.
pub const LISTING_GRACE: Duration = Duration::from_secs(60);

fn ns(d: Duration) -> i64 {
    crate::plan::ns(d)
}

/// The receipt to record and the next step, after a query answered `report`.
pub fn after_report(c: Case, report: &Report) -> (Option<Receipt>, Next) {
    let waited = c.now - c.since;
    let poll = Next::Poll(c.now + ns(c.poll));
    let timed_out = waited >= ns(c.timeout);
    let give_up = || (Some(Receipt::Unknown), if c.urgent { Next::Fallback } else { Next::Done });
    match report {
        Report::Found { receipt, .. } => match receipt {
            Receipt::Delivered | Receipt::Answered => (Some(*receipt), Next::Done),
            Receipt::Failed => (Some(Receipt::Failed), if c.urgent { Next::Fallback } else { Next::Done }),
            Receipt::Busy | Receipt::NoAnswer | Receipt::Unreachable | Receipt::Unknown => {
                (Some(*receipt), Next::Done)
            }
            Receipt::Waiting if timed_out => give_up(),
            Receipt::Waiting => (Some(Receipt::Waiting), poll),
        },
        Report::NotFound if c.answer_lost && c.lists_waiting && waited >= ns(LISTING_GRACE) => {
            (None, Next::Resend)
        }
        Report::NotFound | Report::QueryFailed(_) if timed_out => give_up(),
        Report::NotFound | Report::QueryFailed(_) => (None, poll),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FallbackChannel::*;

    const S: i64 = 1_000_000_000;
    const ORDER: [FallbackChannel; 3] = [Voice, Robot, Email];

    #[test]
    #[allow(clippy::type_complexity)]
    fn the_next_channel() {
        let all = Reach { sms: true, email: true, voice: true, robot: true };
        let i = Some(Level::I);
        let ii = Some(Level::II);
        let cases: &[(Option<Level>, Reach, &[&str], Option<FallbackChannel>, &str)] = &[
            (i, all, &["sms"], Some(Voice), "Ⅰ: a call first"),
            (ii, all, &["sms"], Some(Robot), "Ⅱ does not call (voice_levels = [Ⅰ])"),
            (i, all, &["sms", "voice"], Some(Robot), "called already"),
            (i, Reach { voice: false, ..all }, &["sms"], Some(Robot), "no voice configured"),
            (ii, Reach { robot: false, ..all }, &["sms"], Some(Email), "no robot in the team"),
            (
                ii,
                Reach { robot: false, email: false, ..all },
                &["sms"],
                None,
                "nothing left: the next person",
            ),
            (i, all, &["sms", "voice", "robot", "email"], None, "every channel tried"),
        ];
        for (level, reach, tried, want, why) in cases {
            assert_eq!(next_channel(&ORDER, *level, &[Level::I], *reach, tried), *want, "{why}");
        }
        assert_eq!(
            next_channel(&[Email, Voice], Some(Level::II), &[Level::I, Level::II], all, &["sms"]),
            Some(Email),
            "the configured order"
        );
    }

    fn case(urgent: bool, answer_lost: bool, lists_waiting: bool, waited_s: i64) -> Case {
        Case {
            urgent,
            answer_lost,
            lists_waiting,
            since: 1_000 * S,
            now: 1_000 * S + waited_s * S,
            poll: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
        }
    }

    fn found(r: Receipt) -> Report {
        Report::Found { receipt: r, note: String::new(), id: None }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn receipts_and_what_follows() {
        let poll = |waited: i64| Next::Poll(1_000 * S + waited * S + 10 * S);
        let cases: &[(Case, Report, (Option<Receipt>, Next), &str)] = &[
            (
                case(true, false, true, 20),
                found(Receipt::Delivered),
                (Some(Receipt::Delivered), Next::Done),
                "delivered",
            ),
            (
                case(true, false, true, 20),
                found(Receipt::Failed),
                (Some(Receipt::Failed), Next::Fallback),
                "Ⅰ failed on the handset",
            ),
            (
                case(false, false, true, 20),
                found(Receipt::Failed),
                (Some(Receipt::Failed), Next::Done),
                "Ⅳ failed: recorded",
            ),
            (
                case(true, false, true, 20),
                found(Receipt::Waiting),
                (Some(Receipt::Waiting), poll(20)),
                "waiting",
            ),
            (
                case(true, false, true, 300),
                found(Receipt::Waiting),
                (Some(Receipt::Unknown), Next::Fallback),
                "Ⅱ/Ⅰ not delivered in time",
            ),
            (
                case(false, false, true, 300),
                found(Receipt::Waiting),
                (Some(Receipt::Unknown), Next::Done),
                "Ⅳ: unknown, no more",
            ),
            (
                case(true, true, true, 20),
                found(Receipt::Delivered),
                (Some(Receipt::Delivered), Next::Done),
                "a lost answer, delivered: never sent again",
            ),
            (case(true, true, true, 20), Report::NotFound, (None, poll(20)), "not listed yet"),
            (case(true, true, true, 60), Report::NotFound, (None, Next::Resend), "Aliyun never took it"),
            (case(true, true, false, 60), Report::NotFound, (None, poll(60)), "Tencent reports late: wait"),
            (
                case(true, true, false, 300),
                Report::NotFound,
                (Some(Receipt::Unknown), Next::Fallback),
                "no report in time: another channel, not a resend",
            ),
            (
                case(true, false, true, 20),
                Report::QueryFailed("503".into()),
                (None, poll(20)),
                "the query failed",
            ),
            (
                case(true, false, true, 400),
                Report::QueryFailed("503".into()),
                (Some(Receipt::Unknown), Next::Fallback),
                "still failing past the timeout",
            ),
            (
                case(true, false, true, 20),
                found(Receipt::NoAnswer),
                (Some(Receipt::NoAnswer), Next::Done),
                "a call not answered is recorded",
            ),
            (
                case(true, false, true, 20),
                found(Receipt::Answered),
                (Some(Receipt::Answered), Next::Done),
                "answered",
            ),
        ];
        for (c, report, want, why) in cases {
            assert_eq!(after_report(*c, report), *want, "{why}");
        }
    }
}
