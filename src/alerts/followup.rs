//! The alert manager's follow-ups inside one transaction: alerts held back
//! and free now, repeats, escalations along the chain and phone calls for
//! unacked alerts at voice levels — each due by `decide`, worked out from
//! the state and `now`.

use super::*;

impl Work<'_> {
    /// Follow-ups due at `now`.
    pub(super) fn tick(&mut self, now: TimestampNs) -> Result<(), OpError> {
        let ids: Vec<(String, String)> = self.active.keys().cloned().collect();
        let silences = self.all_silences(now)?;
        // Alerts with an intent waiting in a group (a storm has thousands).
        let queued_ids: std::collections::HashSet<i64> =
            self.pending.iter().map(|(_, i, _)| i.alert.id).collect();
        for key in ids {
            let Some(mut a) = self.active.get(&key).cloned() else { continue };
            let Some(level) = route::routing_level(&a) else { continue };
            let muted = decide::mute(
                &a,
                &silences,
                self.offline.contains(&a.site),
                self.street_alert(&a),
                self.members_max(&a),
                now,
            )
            .is_some();
            let queued = queued_ids.contains(&a.id);
            // Held back before (silence, offline, folded) and free now.
            if !muted && !queued && a.level.is_some() && a.notified_level < a.level && a.unacked() {
                let kind =
                    if a.notified_level.is_none() { IntentKind::Firing } else { IntentKind::Escalated };
                self.notify(&mut a, kind, now, false)?;
                continue;
            }
            if decide::repeat_due(&a, now) {
                a.next_repeat_at = Some(decide::next_repeat(self.policy(), level, now));
                if muted {
                    self.save(&a, &[])?;
                } else {
                    self.queue(&a, IntentKind::Repeat, level, None, now)?;
                    self.save(&a, &[Event::new(now, "repeated", a.level)])?;
                }
            }
            let chain: Vec<Role> = route::teams(self.teams, &a, level)
                .first()
                .map(|t| route::chain(self.teams, t).to_vec())
                .unwrap_or_default();
            if let Some(step) = decide::call_due(&a, &self.policy().voice_levels, chain.len(), now) {
                let after = crate::plan::ns(self.policy().voice_after.get());
                if muted {
                    a.next_voice_at = Some(now + after);
                    self.save(&a, &[])?;
                } else {
                    let role = chain[step as usize];
                    a.voice_step = step + 1;
                    a.next_voice_at = ((step as usize + 1) < chain.len()).then_some(now + after);
                    let called = self.call(&a, role, level, now)?;
                    let note = if called.is_empty() {
                        format!("{}：无人可呼叫", role.name_zh())
                    } else {
                        format!("{}：{}", role.name_zh(), called.join("、"))
                    };
                    self.save(&a, &[Event::new(now, "call", a.level).by(None, Some(&note))])?;
                }
            }
            if let Some(step) = decide::escalation_due(&a, chain.len(), now) {
                a.next_escalation_at = Some(decide::next_escalation(self.policy(), level, now));
                if muted {
                    self.save(&a, &[])?;
                } else {
                    let role = chain[step as usize];
                    a.escalation_step = step;
                    self.queue(&a, IntentKind::Escalation, level, Some(role), now)?;
                    let e = Event::new(now, "escalation", a.level).by(None, Some(role.name_zh()));
                    self.save(&a, &[e])?;
                }
            }
        }
        self.flush_due(now)
    }

    /// Calls the `role` tier of the responsible team's chain about `alert`
    /// (a notification of its own, never grouped: a call is about one
    /// alert); who is called.
    fn call(
        &mut self,
        alert: &Alert,
        role: Role,
        level: Level,
        now: TimestampNs,
    ) -> Result<Vec<String>, OpError> {
        let local = chrono::DateTime::from_timestamp_nanos(now).with_timezone(&self.places.tz);
        let Some(team) = route::teams(self.teams, alert, level).into_iter().next() else {
            return Ok(Vec::new());
        };
        let recipients = route::tier(self.teams, team, role, &alert.street, &local);
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let names = recipients.iter().map(|r| r.name.clone()).collect();
        let intent = Intent {
            kind: IntentKind::Call,
            team: team.id.clone(),
            recipients,
            alert: AlertSnapshot::from(alert),
            escalation_role: Some(role.as_str().to_string()),
            created_at: now,
            partial: false,
        };
        let mut n = Notification { id: 0, team: team.id.clone(), intents: vec![intent], created_at: now };
        n.id = self.tx.insert_notification(&n)?;
        self.out.notifications.push(n);
        Ok(names)
    }
}
