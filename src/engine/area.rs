//! Area levels: a street's from its sites, the district's from its streets.
//!
//! An area is at least as bad as its worst member (`max_of_members`), and an
//! escalation lifts it further when enough members are bad at once ("≥ 3
//! sites at Ⅲ → street Ⅱ").

use super::{Change, State, Transition};
use crate::level::Level;
use crate::plan::{AreaRules, Plan};
use crate::reading::TimestampNs;

/// The level of an area whose members are at `members`.
pub fn level_of(rules: &AreaRules, members: impl Iterator<Item = Option<Level>> + Clone) -> Option<Level> {
    let mut level = if rules.max_of_members { members.clone().max().flatten() } else { None };
    for &(count, at_least, to) in &rules.escalate {
        if members.clone().filter(|m| *m >= Some(at_least)).count() >= count {
            level = level.max(Some(to));
        }
    }
    level
}

/// Recomputes streets and district, pushing their changes.
pub fn update(plan: &Plan, state: &mut State, now: TimestampNs, out: &mut Vec<Transition>) {
    for (si, street) in plan.streets.iter().enumerate() {
        let level = level_of(&plan.street_rules, street.sites.iter().map(|&i| state.sites[i].level));
        if level != state.streets[si] {
            out.push(Transition {
                at: now,
                change: Change::Street {
                    street: street.id.clone(),
                    name: street.name.clone(),
                    from: state.streets[si],
                    to: level,
                },
            });
            state.streets[si] = level;
        }
    }
    let level = level_of(&plan.district_rules, state.streets.iter().copied());
    if level != state.district {
        out.push(Transition { at: now, change: Change::District { from: state.district, to: level } });
        state.district = level;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    #[test]
    fn max_and_escalations() {
        let rules = AreaRules { max_of_members: true, escalate: vec![(3, III, II)] };
        let l = |m: &[Option<Level>]| level_of(&rules, m.iter().copied());
        assert_eq!(l(&[None, None]), None);
        assert_eq!(l(&[Some(IV), None, Some(III)]), Some(III));
        assert_eq!(l(&[Some(III), Some(III), None]), Some(III));
        assert_eq!(l(&[Some(III), Some(III), Some(III)]), Some(II));
        assert_eq!(l(&[Some(III), Some(I), Some(III)]), Some(I), "max wins when higher");
        let only = AreaRules { max_of_members: false, escalate: vec![(2, II, I)] };
        assert_eq!(level_of(&only, [Some(II), None].into_iter()), None);
        assert_eq!(level_of(&only, [Some(II), Some(I)].into_iter()), Some(I));
    }
}
