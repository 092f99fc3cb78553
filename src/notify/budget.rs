//! Carrier budgets, decided: how many messages one recipient may get on one
//! channel, from the record of what was sent to them (`budget_spends` in
//! state.db, so a restart remembers) and `now` — pure and table-tested.
//!
//! A budget is a set of windows (`{ max = 5, per = "1h" }`), all of which
//! must have room. The last `reserve` messages of every window that allows
//! more than `reserve` are kept for urgent (Ⅱ/Ⅰ) notices: a Ⅳ/Ⅲ notice that
//! finds only the reserve left waits for the window to make room and then
//! goes out as one digest of everything queued meanwhile. An urgent notice
//! with no room at all takes another channel (`fallback`), or waits when
//! there is none.

use std::time::Duration;

use crate::config::Window;
use crate::reading::TimestampNs;

fn ns(d: Duration) -> i64 {
    crate::plan::ns(d)
}

/// How many of `w` a notice may use.
fn limit(w: &Window, urgent: bool, reserve: u32) -> u32 {
    if urgent || w.max <= reserve {
        w.max
    } else {
        w.max - reserve
    }
}

/// Whether a message may go at `t`: every window has room and no hold lasts.
fn room(
    windows: &[Window],
    spends: &[TimestampNs],
    hold: Option<TimestampNs>,
    urgent: bool,
    reserve: u32,
    t: i64,
) -> bool {
    if hold.is_some_and(|h| h > t) {
        return false;
    }
    windows.iter().all(|w| {
        let per = ns(w.per.get());
        let used = spends.iter().filter(|s| **s > t - per && **s <= t).count();
        (used as u64) < u64::from(limit(w, urgent, reserve))
    })
}

/// The earliest time at or after `now` at which a message may go, given
/// what was sent (`spends`, any order) and a provider's hold.
pub fn next_free(
    windows: &[Window],
    spends: &[TimestampNs],
    hold: Option<TimestampNs>,
    urgent: bool,
    reserve: u32,
    now: TimestampNs,
) -> TimestampNs {
    // Room only grows as spends leave their windows: the answer is `now`,
    // the end of the hold, or the moment some spend leaves some window.
    let mut candidates: Vec<i64> = vec![now];
    candidates.extend(hold.filter(|h| *h > now));
    for w in windows {
        let per = ns(w.per.get());
        candidates.extend(spends.iter().map(|s| s + per).filter(|t| *t > now));
    }
    candidates.sort_unstable();
    candidates.dedup();
    candidates
        .into_iter()
        .find(|t| room(windows, spends, hold, urgent, reserve, *t))
        // Unreachable (the last candidate has every spend out of every
        // window), but never stall a message on a bug: an hour later.
        .unwrap_or(now + 3_600_000_000_000)
}

/// What to do with a message for a recipient now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send it (with whatever else is queued for the recipient).
    Send,
    /// Hold it (and merge what comes meanwhile) until then.
    Wait(TimestampNs),
    /// An urgent notice the budget cannot carry now: take another channel.
    Fallback,
}

/// The budget's decision for a message: `urgent` for Ⅱ/Ⅰ; `can_fallback`
/// when another channel could carry it.
#[allow(clippy::too_many_arguments)]
pub fn step(
    windows: &[Window],
    reserve: u32,
    spends: &[TimestampNs],
    hold: Option<TimestampNs>,
    urgent: bool,
    can_fallback: bool,
    now: TimestampNs,
) -> Step {
    let at = next_free(windows, spends, hold, urgent, reserve, now);
    if at <= now {
        Step::Send
    } else if urgent && can_fallback {
        Step::Fallback
    } else {
        Step::Wait(at)
    }
}

/// Until when a provider's limit answer holds the recipient: the end of the
/// configured window that answer means (the longest not longer than the
/// provider's, `provider_window`), counted from the oldest message still in
/// it; with no such window, the provider's own. A provider that counts
/// messages floodguard never sent (another system on the same account)
/// holds for the whole window.
pub fn limit_until(
    windows: &[Window],
    spends: &[TimestampNs],
    provider_window: Duration,
    now: TimestampNs,
) -> TimestampNs {
    let per = windows
        .iter()
        .map(|w| w.per.get())
        .filter(|p| *p <= provider_window)
        .max()
        .unwrap_or(provider_window);
    let per = ns(per);
    let oldest = spends.iter().copied().filter(|s| *s > now - per && *s <= now).min();
    oldest.map_or(now + per, |o| o + per).max(now + 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const MIN: i64 = 60 * S;
    const H: i64 = 3600 * S;

    fn aliyun() -> Vec<Window> {
        crate::config::SMS_BUDGET.to_vec()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn next_free_by_window() {
        let t0 = 100 * H;
        // (spends as minutes before t0, hold, urgent, expected minutes after t0)
        let cases: &[(&[i64], Option<i64>, bool, i64, &str)] = &[
            (&[], None, false, 0, "nothing sent: now"),
            (&[0], None, false, 1, "sent just now: the minute window"),
            (&[2], None, false, 0, "two minutes ago: free"),
            (&[50, 40, 30], None, false, 0, "three in the hour: a fourth is free"),
            (&[50, 40, 30, 20], None, false, 10, "four of five: Ⅳ/Ⅲ wait for the oldest to leave the hour"),
            (&[50, 40, 30, 20], None, true, 0, "the reserve is for Ⅱ/Ⅰ"),
            (&[50, 40, 30, 20, 10], None, true, 10, "all five: even Ⅱ/Ⅰ wait"),
            (&[50, 40, 30, 20, 10], None, false, 20, "Ⅳ/Ⅲ need two to leave"),
            (&[], Some(7), true, 7, "a provider's hold"),
            (&[0], Some(-5), false, 1, "a hold in the past counts for nothing"),
        ];
        for (spends, hold, urgent, want, why) in cases {
            let spends: Vec<i64> = spends.iter().map(|m| t0 - m * MIN).collect();
            let got = next_free(&aliyun(), &spends, hold.map(|h| t0 + h * MIN), *urgent, 1, t0);
            assert_eq!((got - t0) / MIN, *want, "{why}");
        }
    }

    #[test]
    fn the_day_window_and_a_full_day() {
        let t0 = 100 * H;
        // Nine over the last day, spaced two hours apart: Ⅳ/Ⅲ have used
        // theirs (10 − reserve); the oldest leaves the day 2 h from now.
        let spends: Vec<i64> = (1..=9).map(|k| t0 - k * 2 * H - 6 * H + 2 * H).collect();
        assert_eq!(next_free(&aliyun(), &spends, None, true, 1, t0), t0, "the tenth is Ⅱ/Ⅰ's");
        let free = next_free(&aliyun(), &spends, None, false, 1, t0);
        assert_eq!(free, spends.iter().min().unwrap() + 24 * H);
    }

    #[test]
    fn a_reserve_never_takes_a_window_of_one() {
        // A window of 1 a minute keeps no reserve: Ⅳ may use it.
        let w = [Window::new(1, 60)];
        assert_eq!(next_free(&w, &[], None, false, 1, 0), 0);
        assert_eq!(next_free(&[], &[1, 2, 3], None, false, 1, 10), 10, "no windows: no budget");
    }

    #[test]
    fn steps() {
        let t0 = 100 * H;
        let four: Vec<i64> = [50, 40, 30, 20].iter().map(|m| t0 - m * MIN).collect();
        let five: Vec<i64> = [50, 40, 30, 20, 10].iter().map(|m| t0 - m * MIN).collect();
        let w = aliyun();
        assert_eq!(step(&w, 1, &four, None, false, true, t0), Step::Wait(t0 + 10 * MIN));
        assert_eq!(step(&w, 1, &four, None, true, true, t0), Step::Send);
        assert_eq!(step(&w, 1, &five, None, true, true, t0), Step::Fallback);
        assert_eq!(step(&w, 1, &five, None, true, false, t0), Step::Wait(t0 + 10 * MIN), "no other channel");
        assert_eq!(
            step(&w, 1, &five, None, false, true, t0),
            Step::Wait(t0 + 20 * MIN),
            "Ⅳ never falls back"
        );
        assert_eq!(step(&w, 1, &[], Some(t0 + MIN), true, true, t0), Step::Fallback, "a hold is no room");
    }

    #[test]
    fn a_limit_answer_holds_to_the_end_of_its_window() {
        let t0 = 100 * H;
        let spends: Vec<i64> = [50, 40, 30, 20, 10].iter().map(|m| t0 - m * MIN).collect();
        let w = aliyun();
        // "Hour level": the hour window, from the oldest of the hour.
        assert_eq!(limit_until(&w, &spends, Duration::from_secs(3600), t0), t0 + 10 * MIN);
        // "Minute level": the minute window; nothing in it → a whole minute.
        assert_eq!(limit_until(&w, &spends, Duration::from_secs(60), t0), t0 + MIN);
        // Tencent's thirty seconds: shorter than any window here → its own.
        assert_eq!(limit_until(&w, &[t0 - 10 * S], Duration::from_secs(30), t0), t0 + 20 * S);
        // A test's compressed budget: the 20 s window stands for the hour.
        let short = [Window::new(100, 20)];
        assert_eq!(
            limit_until(&short, &[t0 - 15 * S, t0 - 5 * S], Duration::from_secs(3600), t0),
            t0 + 5 * S
        );
        // Never in the past or now: at least a second.
        assert_eq!(limit_until(&short, &[t0 - 20 * S + 1], Duration::from_secs(3600), t0), t0 + S);
    }
}
