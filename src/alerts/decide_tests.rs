use super::*;
use crate::alerts::model::AlertState;
use Level::*;

const MIN: i64 = 60_000_000_000;

fn alert(level: Option<Level>, state: AlertState, notified: Option<Level>) -> Alert {
    Alert {
        id: 1,
        kind: Some(AlertKind::Site),
        site: "BH-BZ-01".into(),
        site_kind: "pump_station".into(),
        street: "binhe".into(),
        rule: "forebay".into(),
        state,
        level,
        notified_level: notified,
        ..Alert::default()
    }
}

#[test]
fn what_a_transition_does() {
    use AlertState::*;
    let cases = [
        (None, Some(III), Action::Raise(III)),
        (Some(alert(Some(III), Firing, Some(III))), Some(II), Action::Escalate(II)),
        (Some(alert(Some(II), Acked, Some(II))), Some(IV), Action::Deescalate(IV)),
        (Some(alert(Some(II), Acked, Some(II))), None, Action::Resolve),
        (Some(alert(Some(II), Firing, Some(II))), Some(II), Action::Nothing),
        (None, None, Action::Nothing),
    ];
    for (a, to, want) in cases {
        assert_eq!(on_change(a.as_ref(), to), want, "{a:?} → {to:?}");
    }
}

#[test]
fn one_notice_per_level_change() {
    use AlertState::*;
    use IntentKind as K;
    let cases = [
        // (alert, action, intent)
        (alert(None, Pending, None), Action::Raise(III), Some(K::Firing)),
        (alert(Some(III), Firing, Some(III)), Action::Escalate(II), Some(K::Escalated)),
        // Back up to a level already told of (after a dip): not again.
        (alert(Some(III), Acked, Some(II)), Action::Escalate(II), None),
        (alert(Some(II), Acked, Some(II)), Action::Deescalate(III), Some(K::Deescalated)),
        // Never told (silenced all along): nothing to take back.
        (alert(Some(II), Firing, None), Action::Deescalate(III), None),
        (alert(Some(IV), Firing, Some(IV)), Action::Resolve, Some(K::Resolved)),
        (alert(Some(IV), Firing, None), Action::Resolve, None),
        (alert(Some(II), Firing, Some(II)), Action::Nothing, None),
    ];
    for (a, action, want) in cases {
        assert_eq!(notify_on_change(&a, action), want, "{a:?} {action:?}");
    }
}

#[test]
fn repeats_only_for_unacked_alerts_that_are_due() {
    use AlertState::*;
    let due = |state, next: Option<i64>, now| {
        let mut a = alert(Some(III), state, Some(III));
        a.next_repeat_at = next;
        repeat_due(&a, now)
    };
    assert!(due(Firing, Some(10 * MIN), 10 * MIN));
    assert!(due(Pending, Some(10 * MIN), 11 * MIN));
    assert!(!due(Firing, Some(10 * MIN), 9 * MIN));
    assert!(!due(Acked, Some(10 * MIN), 11 * MIN));
    assert!(!due(Disposed, Some(10 * MIN), 11 * MIN));
    assert!(!due(Resolved, Some(10 * MIN), 11 * MIN));
    assert!(!due(Firing, None, 11 * MIN));
}

#[test]
fn escalation_walks_the_chain_until_acked() {
    use AlertState::*;
    let step = |state, step, next: Option<i64>, now| {
        let mut a = alert(Some(II), state, Some(II));
        a.escalation_step = step;
        a.next_escalation_at = next;
        escalation_due(&a, 3, now)
    };
    assert_eq!(step(Firing, 0, Some(15 * MIN), 15 * MIN), Some(1));
    assert_eq!(step(Firing, 1, Some(30 * MIN), 31 * MIN), Some(2));
    assert_eq!(step(Firing, 2, Some(45 * MIN), 46 * MIN), None, "the chain has three tiers");
    assert_eq!(step(Firing, 0, Some(15 * MIN), 14 * MIN), None);
    assert_eq!(step(Acked, 0, Some(15 * MIN), 16 * MIN), None);
    // Due during a downtime: due once at the first look after it.
    assert_eq!(step(Firing, 0, Some(15 * MIN), 90 * MIN), Some(1));
}

#[test]
fn deadlines_follow_the_level() {
    let p = Alerting::default();
    assert_eq!(next_repeat(&p, II, 0), 30 * MIN);
    assert_eq!(next_repeat(&p, IV, 0), 120 * MIN);
    assert_eq!(next_escalation(&p, I, 5), 5 + 10 * MIN);
    assert_eq!(next_escalation(&p, III, 0), 30 * MIN);
}

fn silence(id: i64, m: Matchers, from: i64, to: i64) -> Silence {
    Silence {
        id,
        matchers: m,
        starts_at: from,
        ends_at: to,
        created_by: "x".into(),
        comment: "y".into(),
        from_config: false,
    }
}

#[test]
fn what_mutes_an_alert() {
    let a = alert(Some(III), AlertState::Firing, None);
    let pump = Matchers { kind: Some("pump_station".into()), ..Matchers::default() };
    let other_site = Matchers { site: Some("XC-BZ-01".into()), ..Matchers::default() };
    let this =
        Matchers { site: Some("BH-BZ-01".into()), rule: Some("forebay".into()), ..Matchers::default() };
    let street = Matchers { street: Some("binhe".into()), ..Matchers::default() };
    let t = 10 * MIN;
    let cases: Vec<(Vec<Silence>, bool, Option<(i64, Level)>, Option<Mute>)> = vec![
        (vec![], false, None, None),
        (vec![silence(7, pump.clone(), 0, 20 * MIN)], false, None, Some(Mute::Silenced(7))),
        (vec![silence(7, this.clone(), 0, 20 * MIN)], false, None, Some(Mute::Silenced(7))),
        (vec![silence(7, street, 0, 20 * MIN)], false, None, Some(Mute::Silenced(7))),
        (vec![silence(7, other_site, 0, 20 * MIN)], false, None, None),
        // Not yet, and no longer (the end is exclusive).
        (vec![silence(7, pump.clone(), 11 * MIN, 20 * MIN)], false, None, None),
        (vec![silence(7, pump, 0, 10 * MIN)], false, None, None),
        (vec![], true, None, Some(Mute::Inhibited)),
        (vec![], false, Some((9, II)), Some(Mute::Folded(9))),
        (vec![], false, Some((9, III)), Some(Mute::Folded(9))),
        (vec![], false, Some((9, IV)), None),
    ];
    for (silences, offline, street_alert, want) in cases {
        assert_eq!(
            mute(&a, &silences, offline, street_alert, None, t),
            want,
            "{silences:?} {offline} {street_alert:?}"
        );
    }
    // Street alerts are not inhibited or folded; they tell only what their
    // sites' alerts do not — unless sites fold into them.
    let mut s = a.clone();
    s.kind = Some(AlertKind::Street);
    s.level = Some(II);
    assert_eq!(mute(&s, &[], true, None, Some(III), t), None, "≥ 3 sites at Ⅲ made the street Ⅱ: news");
    assert_eq!(mute(&s, &[], false, None, Some(II), t), Some(Mute::AsMembers));
    assert_eq!(mute(&s, &[], false, None, Some(I), t), Some(Mute::AsMembers));
    assert_eq!(
        mute(&s, &[], false, Some((9, II)), Some(II), t),
        None,
        "folding: the street speaks for its sites"
    );
}

#[test]
fn grouping_holds_a_rise_for_group_wait_and_the_rest_for_the_window() {
    let p = Alerting::default();
    assert_eq!(wait(&p, IntentKind::Firing, Some(II)), 0);
    assert_eq!(wait(&p, IntentKind::Escalated, Some(I)), 0);
    assert_eq!(wait(&p, IntentKind::Firing, Some(III)), 30_000_000_000);
    assert_eq!(wait(&p, IntentKind::Repeat, Some(I)), 30_000_000_000);
    assert_eq!(wait(&p, IntentKind::Resolved, None), 30_000_000_000);
    // A storm at Ⅲ: all go out 30 s after the first.
    let storm: Vec<(i64, i64)> = (0..50).map(|k| (k * 100_000_000, 30_000_000_000)).collect();
    assert_eq!(flush_at(&storm, None, 0), Some(30_000_000_000));
    // A rise to Ⅱ joining pending Ⅲ notices takes them along at once.
    let mut mixed = storm.clone();
    mixed.push((2_000_000_000, 0));
    assert_eq!(flush_at(&mixed, None, 0), Some(2_000_000_000));
    assert_eq!(flush_at(&[], None, 0), None);
    // Storm mode: told 1 s ago, a Ⅱ rise waits until the gap is over; told
    // long ago, it goes at once.
    let s = 1_000_000_000;
    assert_eq!(flush_at(&[(2 * s, 0)], Some(s), 10 * s), Some(11 * s));
    assert_eq!(flush_at(&[(60 * s, 0)], Some(s), 10 * s), Some(60 * s));
    assert_eq!(flush_at(&[(2 * s, 0)], Some(s), 0), Some(2 * s), "no gap: at once");
}

#[test]
fn calls_for_unacked_alerts_at_voice_levels() {
    use AlertState::*;
    let p = Alerting::default(); // voice_levels [Ⅰ], voice_after 5 m
    let t0 = 1_000 * MIN;
    // (alert level, called about, level told, expected first call)
    let arm = [
        (None, I, Some(t0 + 5 * MIN), "a first notice at Ⅰ arms the calls"),
        (None, II, None, "Ⅱ does not call by default"),
        (Some(I), I, None, "Ⅰ again (after a dip): nobody is called twice"),
        (Some(II), I, Some(t0 + 5 * MIN), "a rise above what was called about calls again"),
    ];
    for (called, level, want, why) in arm {
        let a = Alert { voice_level: called, ..alert(Some(level), Firing, Some(level)) };
        assert_eq!(arm_calls(&p, &a, level, t0), want, "{why}");
    }
    let due = |state, level, step, at: Option<i64>| {
        let a = Alert { voice_step: step, next_voice_at: at, ..alert(Some(level), state, Some(level)) };
        call_due(&a, &p.voice_levels, 3, t0)
    };
    assert_eq!(due(Firing, I, 0, Some(t0)), Some(0), "the on-duty leader first");
    assert_eq!(due(Firing, I, 2, Some(t0 - MIN)), Some(2), "then the chain");
    assert_eq!(due(Firing, I, 3, Some(t0)), None, "the chain is done");
    assert_eq!(due(Firing, I, 0, Some(t0 + 1)), None, "not yet");
    assert_eq!(due(Acked, I, 0, Some(t0)), None, "acked: no call");
    assert_eq!(due(Firing, II, 1, Some(t0)), None, "fell below the voice levels: paused");
    assert_eq!(due(Firing, I, 0, None), None, "never armed");
}
