//! The alert manager's work inside one transaction: applying transitions,
//! follow-ups and operators' acts to alerts, and queueing intents.

use super::*;

impl Work<'_> {
    pub(super) fn policy(&self) -> &crate::config::Alerting {
        &self.teams.alerting
    }

    /// Silences from config and from the database, read once per batch.
    pub(super) fn all_silences(&mut self, now: TimestampNs) -> Result<Vec<Silence>, OpError> {
        if self.db_silences.is_none() {
            let mut v = self.silences.to_vec();
            let stored: Vec<Silence> = self.tx_silences(now)?;
            v.extend(stored);
            self.db_silences = Some(v);
        }
        Ok(self.db_silences.clone().unwrap_or_default())
    }

    fn tx_silences(&self, now: TimestampNs) -> Result<Vec<Silence>, OpError> {
        Ok(self.tx.silences(now)?)
    }

    /// The street's active alert (id, level), when sites fold into it.
    pub(super) fn street_alert(&self, alert: &Alert) -> Option<(i64, Level)> {
        if !self.policy().fold_sites_into_street {
            return None;
        }
        let a = self.active.get(&(alert.street.clone(), AREA_RULE.to_string()))?;
        (a.kind == Some(AlertKind::Street)).then_some((a.id, a.level?))
    }

    /// For an area alert: the highest level of its members' active alerts
    /// (a street's sites, the district's streets).
    pub(super) fn members_max(&self, alert: &Alert) -> Option<Level> {
        match alert.kind {
            Some(AlertKind::Street) => self
                .active
                .values()
                .filter(|a| a.kind == Some(AlertKind::Site) && a.street == alert.street)
                .filter_map(|a| a.level)
                .max(),
            Some(AlertKind::District) => self
                .active
                .values()
                .filter(|a| a.kind == Some(AlertKind::Street))
                .filter_map(|a| a.level)
                .max(),
            _ => None,
        }
    }

    /// Writes the alert and its new events; lifecycle events also become
    /// `alert_event` points.
    pub(super) fn save(&mut self, alert: &Alert, events: &[Event]) -> Result<(), OpError> {
        // Written once at the end of the transaction, however often it
        // changed within it (a storm changes an alert several times a batch).
        let mut row = alert.clone();
        row.timeline.clear();
        self.dirty.insert(alert.id, row);
        for e in events {
            self.tx.add_event(alert.id, e)?;
            let influx_event = match (e.event.as_str(), alert.kind) {
                ("firing", Some(AlertKind::Offline)) => Some("offline"),
                (ev @ ("firing" | "escalated" | "deescalated" | "acked" | "disposed" | "resolved"), _) => {
                    Some(ev)
                }
                _ => None,
            };
            if let Some(ev) = influx_event {
                alert_event_line(&mut self.out.lines, alert, ev, e.ts);
            }
            self.out.changes.push(crate::events::AlertChange {
                id: alert.id,
                event: e.event.clone(),
                kind: alert.kind.map_or("site", |k| k.as_str()).to_string(),
                site: alert.site.clone(),
                street: alert.street.clone(),
                level: alert.level,
                state: alert.state.as_str().to_string(),
                by: e.by.clone(),
                at: e.ts,
            });
        }
        let key = (alert.site.clone(), alert.rule.clone());
        if alert.is_active() {
            let mut cached = alert.clone();
            cached.timeline.clear();
            self.active.insert(key, cached);
        } else {
            self.active.remove(&key);
        }
        Ok(())
    }

    pub(super) fn transition(&mut self, t: &Transition) -> Result<(), OpError> {
        let now = t.at;
        match &t.change {
            Change::Site(c) => self.level_change(site_alert(c, now), c.to, now),
            // Its gateway's or the intake's alert stands for it: inhibited, no alert of its own.
            Change::Offline { site, reason: crate::engine::OfflineReason::Upstream, .. } => {
                self.offline.insert(site.to_string());
                Ok(())
            }
            Change::Offline { site, .. } => {
                self.offline.insert(site.to_string());
                let (name, street, kind) = self.places.sites.get(&**site).cloned().unwrap_or_default();
                let template = Alert {
                    kind: Some(AlertKind::Offline),
                    site: site.to_string(),
                    site_name: name.to_string(),
                    site_kind: kind.to_string(),
                    street: street.to_string(),
                    rule: OFFLINE_RULE.into(),
                    rule_name: "设备离线".into(),
                    started_at: now,
                    updated_at: now,
                    ..Alert::default()
                };
                self.level_change(template, Some(Level::IV), now)
            }
            Change::Online { site } => {
                self.offline.remove(&**site);
                let template = Alert {
                    kind: Some(AlertKind::Offline),
                    site: site.to_string(),
                    rule: OFFLINE_RULE.into(),
                    ..Alert::default()
                };
                self.level_change(template, None, now)
            }
            Change::Street { street, name, to, .. } => {
                points::area_level(&mut self.out.lines, "street", street, *to, now);
                let template = Alert {
                    kind: Some(AlertKind::Street),
                    site: street.to_string(),
                    site_name: name.to_string(),
                    street: street.to_string(),
                    rule: AREA_RULE.into(),
                    rule_name: "街道响应等级".into(),
                    started_at: now,
                    updated_at: now,
                    ..Alert::default()
                };
                self.level_change(template, *to, now)
            }
            Change::Qc(f) => {
                points::telemetry_qc(&mut self.out.lines, f);
                Ok(())
            }
            Change::SensorFault(f) => {
                let template = Alert {
                    kind: Some(AlertKind::Maintenance),
                    site: f.site.to_string(),
                    site_name: f.site_name.to_string(),
                    site_kind: f.kind.as_str().to_string(),
                    street: f.street.to_string(),
                    rule: crate::replay::fault_rule(&f.metric),
                    rule_name: format!("疑似传感器故障（{} {}）", f.metric, f.test.name_zh()),
                    value: f.value,
                    unit: f.unit.to_string(),
                    started_at: now,
                    updated_at: now,
                    ..Alert::default()
                };
                self.level_change(template, f.open.then_some(Level::IV), now)
            }
            Change::Upstream(u) => {
                let names: Vec<&str> = u.site_names.iter().map(|n| &**n).take(5).collect();
                let more = if u.sites.len() > names.len() { "等" } else { "" };
                let (site_name, what) = match u.kind {
                    crate::plan::UpstreamKind::Gateway => (format!("网关 {}", u.id), "采集链路中断"),
                    crate::plan::UpstreamKind::Intake => {
                        (format!("floodguard {} 接入", u.id.to_uppercase()), "数据接入中断")
                    }
                };
                let template = Alert {
                    kind: Some(AlertKind::Gateway),
                    site: u.id.to_string(),
                    site_name,
                    street: u.street.as_deref().unwrap_or("").to_string(),
                    rule: crate::engine::upstream::LINK_RULE.into(),
                    rule_name: if u.down {
                        format!("{what}：{} 个站点无数据（{}{more}）", u.sites.len(), names.join("、"))
                    } else {
                        what.to_string()
                    },
                    started_at: now,
                    updated_at: now,
                    ..Alert::default()
                };
                let key = (template.site.clone(), template.rule.clone());
                let was = self.active.get(&key).map(|a| a.id);
                self.level_change(template, u.down.then_some(Level::IV), now)?;
                // Every silent site, on record in the timeline.
                match self.active.get(&key).cloned() {
                    Some(a) if u.down && was != Some(a.id) => {
                        let all: Vec<&str> = u.site_names.iter().map(|n| &**n).collect();
                        let note = format!("无数据站点：{}", all.join("、"));
                        self.save(&a, &[Event::new(now, "sites", a.level).by(None, Some(&note))])
                    }
                    _ => Ok(()),
                }
            }
            Change::District { to, .. } => {
                points::area_level(&mut self.out.lines, "district", &self.places.district_id, *to, now);
                let template = Alert {
                    kind: Some(AlertKind::District),
                    site: self.places.district_id.clone(),
                    site_name: self.places.district_name.clone(),
                    rule: AREA_RULE.into(),
                    rule_name: "区级响应等级".into(),
                    started_at: now,
                    updated_at: now,
                    ..Alert::default()
                };
                self.level_change(template, *to, now)
            }
        }
    }

    /// Applies a level change to the (site, rule) alert; `template` carries
    /// what the transition knows (value, threshold, card, names).
    fn level_change(&mut self, template: Alert, to: Option<Level>, now: TimestampNs) -> Result<(), OpError> {
        let key = (template.site.clone(), template.rule.clone());
        let existing = self.active.get(&key).cloned();
        let action = decide::on_change(existing.as_ref(), to);
        let mut events = Vec::new();
        let mut alert = match (action, existing) {
            (Action::Nothing, _) => return Ok(()),
            (Action::Raise(l), _) => {
                let mut a = Alert {
                    state: AlertState::Pending,
                    level: Some(l),
                    peak_level: Some(l),
                    ..template.clone()
                };
                a.peak_value = a.value;
                a.peak_at = Some(now);
                a.id = self.tx.insert_alert(&a)?;
                events.push(Event::new(now, "firing", Some(l)).by(None, suspect_note(&a).as_deref()));
                a
            }
            (_, Some(mut a)) => {
                match action {
                    Action::Escalate(l) | Action::Deescalate(l) => {
                        let up = matches!(action, Action::Escalate(_));
                        a.level = Some(l);
                        if Some(l) > a.peak_level {
                            a.peak_level = Some(l);
                            a.peak_value = template.value.or(a.peak_value);
                            a.peak_at = Some(now);
                        }
                        if up && matches!(a.state, AlertState::Acked | AlertState::Disposed) {
                            // A worse level needs a new acknowledgement.
                            a.state = AlertState::Firing;
                            a.escalation_step = 0;
                        }
                        a.suspect = if up { template.suspect.clone() } else { None };
                        let note = suspect_note(&a);
                        events.push(
                            Event::new(now, if up { "escalated" } else { "deescalated" }, Some(l))
                                .by(None, note.as_deref()),
                        );
                    }
                    Action::Resolve => {
                        a.state = AlertState::Resolved;
                        a.level = None;
                        a.resolved_at = Some(now);
                        a.next_repeat_at = None;
                        a.next_escalation_at = None;
                        a.next_voice_at = None;
                        events.push(Event::new(now, "resolved", None));
                    }
                    _ => {}
                }
                if template.value.is_some() {
                    a.value = template.value;
                    a.threshold = template.threshold;
                }
                if template.card.is_some() || action == Action::Resolve {
                    a.card = template.card.clone().or(a.card);
                }
                a.trend_per_hour = template.trend_per_hour;
                a.eta_level = template.eta_level;
                a.eta_seconds = template.eta_seconds;
                a.updated_at = now;
                a
            }
            (_, None) => return Ok(()),
        };
        let before = alert.clone();
        self.save(&alert, &events)?;
        if let Some(kind) = decide::notify_on_change(&before, action) {
            self.notify(&mut alert, kind, now, true)?;
        }
        Ok(())
    }

    /// Tells the teams about `alert` (unless muted), queueing the intents.
    pub(super) fn notify(
        &mut self,
        alert: &mut Alert,
        kind: IntentKind,
        now: TimestampNs,
        record_mute: bool,
    ) -> Result<(), OpError> {
        if alert.kind == Some(AlertKind::Offline) && !self.policy().notify_offline {
            return Ok(());
        }
        let silences = self.all_silences(now)?;
        let street_alert = self.street_alert(alert);
        let members = self.members_max(alert);
        if let Some(m) =
            decide::mute(alert, &silences, self.offline.contains(&alert.site), street_alert, members, now)
        {
            if record_mute {
                let (event, note) = match m {
                    Mute::Silenced(id) => ("silenced", format!("silence #{id}")),
                    Mute::Inhibited => ("inhibited", "站点离线".to_string()),
                    Mute::Folded(id) => ("folded", format!("并入街道预警 #{id}")),
                    Mute::AsMembers => ("held", "与所辖站点预警同级，不另行通知".to_string()),
                };
                let e = Event::new(now, event, alert.level).by(None, Some(&note));
                self.save(alert, &[e])?;
            }
            return Ok(());
        }
        let Some(level) = route::routing_level(alert).or(alert.notified_level) else { return Ok(()) };
        self.queue(alert, kind, level, None, now)?;
        if kind != IntentKind::Resolved {
            alert.notified_level = alert.level;
            alert.last_notified_at = Some(now);
            alert.next_repeat_at = Some(decide::next_repeat(self.policy(), level, now));
            if matches!(kind, IntentKind::Firing | IntentKind::Escalated) {
                alert.next_escalation_at = Some(decide::next_escalation(self.policy(), level, now));
                if let Some(at) = decide::arm_calls(self.policy(), alert, level, now) {
                    alert.next_voice_at = Some(at);
                    alert.voice_step = 0;
                    alert.voice_level = Some(level);
                }
            }
            self.save(alert, &[])?;
        }
        Ok(())
    }

    /// Queues an intent per team (with the chain role's members for an
    /// escalation), skipping one already waiting for the same reason.
    pub(super) fn queue(
        &mut self,
        alert: &Alert,
        kind: IntentKind,
        level: Level,
        escalation: Option<Role>,
        now: TimestampNs,
    ) -> Result<(), OpError> {
        // The alert by reference: a waiting intent's snapshot is made when
        // it goes out (`flush_due`), once, not at every flip of a storm.
        let reference = || {
            let kind = alert.kind.map_or("site", |k| k.as_str()).to_string();
            AlertSnapshot::reference(alert.id, kind, alert.site.clone(), alert.rule.clone(), alert.level)
        };
        let local = chrono::DateTime::from_timestamp_nanos(now).with_timezone(&self.places.tz);
        let mut teams = route::teams(self.teams, alert, level);
        if escalation.is_some() {
            // The chain is the responsible team's: the first covering the street.
            teams.truncate(1);
        }
        for team in teams {
            let (recipients, role) = match escalation {
                None => (route::members(team, level, &local), None),
                Some(role) => (
                    route::tier(self.teams, team, role, &alert.street, &local),
                    Some(role.as_str().to_string()),
                ),
            };
            if recipients.is_empty() {
                continue;
            }
            let wait = decide::wait(self.policy(), kind, Some(level));
            // Storm mode: an alert already waiting in this team's group is
            // told once, at its latest state — not once per flip within the
            // window. The group keeps the earlier of the two deadlines; a
            // first notice stays a first notice; everyone either would have
            // told is told.
            // The alert's id first: a storm keeps thousands waiting.
            let waiting = self.pending.iter().position(|(_, i, _)| {
                i.alert.id == alert.id && i.team == team.id && i.escalation_role == role
            });
            if let Some(pos) = waiting {
                let (row, old, old_wait) = &mut self.pending[pos];
                if old.kind == kind && old.alert.level == alert.level {
                    continue;
                }
                let deadline = (old.created_at + *old_wait).min(now + wait);
                if !(old.kind == IntentKind::Firing && kind != IntentKind::Resolved) {
                    old.kind = kind;
                }
                old.alert.level = alert.level;
                for r in recipients {
                    if !old.recipients.contains(&r) {
                        old.recipients.push(r);
                    }
                }
                *old_wait = deadline - old.created_at;
                if *row != 0 {
                    self.pending_changed.insert(*row);
                }
                continue;
            }
            let intent = Intent {
                kind,
                team: team.id.clone(),
                recipients,
                alert: reference(),
                escalation_role: role,
                created_at: now,
                partial: true,
            };
            // Row 0: not on disk yet; written at the end of the transaction
            // unless it goes out before (a Ⅱ/Ⅰ rise goes at once).
            self.pending.push((0, intent, wait));
        }
        Ok(())
    }

    /// Sends every team group whose wait is over.
    pub(super) fn flush_due(&mut self, now: TimestampNs) -> Result<(), OpError> {
        let mut teams: Vec<String> = self.pending.iter().map(|(_, i, _)| i.team.clone()).collect();
        teams.sort();
        teams.dedup();
        for team in teams {
            let waits: Vec<(i64, i64)> = self
                .pending
                .iter()
                .filter(|(_, i, _)| i.team == team)
                .map(|(_, i, w)| (i.created_at, *w))
                .collect();
            let gap = crate::plan::ns(self.policy().storm_gap.get());
            if decide::flush_at(&waits, self.last_told.get(&team).copied(), gap).is_none_or(|t| t > now) {
                continue;
            }
            let (mine, rest): (Vec<_>, Vec<_>) =
                std::mem::take(self.pending).into_iter().partition(|(_, i, _)| i.team == team);
            *self.pending = rest;
            let ids: Vec<i64> = mine.iter().map(|(id, _, _)| *id).filter(|id| *id != 0).collect();
            for id in &ids {
                self.pending_changed.remove(id);
            }
            let mut intents: Vec<Intent> = mine.into_iter().map(|(_, i, _)| i).collect();
            let mut alerts = Vec::with_capacity(intents.len());
            for i in intents.iter_mut() {
                let key = (i.alert.site.clone(), i.alert.rule.clone());
                let alert = match self.active.get(&key) {
                    Some(a) if a.id == i.alert.id => Some(a.clone()),
                    _ => self.tx_alert(i.alert.id)?,
                };
                if i.partial {
                    // The alert's state now, from memory or its record, at
                    // the level the intent tells.
                    if let Some(a) = &alert {
                        let level = i.alert.level;
                        i.alert = snapshot_of(self.active, self.supplies, self.places, a);
                        i.alert.level = level;
                    }
                    i.partial = false;
                }
                alerts.push(alert);
            }
            self.last_told.insert(team.clone(), now);
            let mut n = Notification { id: 0, team: team.clone(), intents, created_at: now };
            n.id = self.tx.insert_notification(&n)?;
            self.tx.delete_pending(&ids)?;
            for (i, alert) in n.intents.iter().zip(alerts) {
                let names: Vec<&str> = i.recipients.iter().map(|r| r.name.as_str()).collect();
                let note = format!("{} → {} ({})", i.kind, names.join("、"), team);
                if let Some(mut a) = alert {
                    if a.state == AlertState::Pending {
                        a.state = AlertState::Firing;
                    }
                    self.save(&a, &[Event::new(now, "notified", i.alert.level).by(None, Some(&note))])?;
                }
            }
            self.out.notifications.push(n);
        }
        Ok(())
    }

    fn tx_alert(&self, id: i64) -> Result<Option<Alert>, OpError> {
        if let Some(a) = self.dirty.get(&id) {
            // Changed in this transaction: the row on disk is behind.
            let mut a = a.clone();
            a.timeline = self.tx.alert(id)?.map(|d| d.timeline).unwrap_or_default();
            return Ok(Some(a));
        }
        Ok(self.tx.alert(id)?)
    }

    /// Writes the intents still waiting that this transaction added or
    /// changed.
    pub(super) fn write_pending(&mut self) -> Result<(), OpError> {
        for (row, intent, wait) in self.pending.iter_mut() {
            if *row == 0 {
                *row = self.tx.insert_pending(intent, *wait)?;
            } else if self.pending_changed.remove(row) {
                self.tx.update_pending(*row, intent, *wait)?;
            }
        }
        self.pending_changed.clear();
        Ok(())
    }

    /// Writes the alerts changed in this transaction.
    pub(super) fn write_dirty(&mut self) -> Result<(), OpError> {
        let mut ids: Vec<i64> = self.dirty.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.tx.update_alert(&self.dirty[&id])?;
        }
        self.dirty.clear();
        Ok(())
    }

    pub(super) fn load(&self, id: i64) -> Result<Alert, OpError> {
        let cached = self.active.values().find(|a| a.id == id).cloned();
        match cached {
            Some(a) => Ok(a),
            None => self.tx_alert(id)?.ok_or(OpError::NoAlert(id)),
        }
    }

    pub(super) fn ack(
        &mut self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now: TimestampNs,
    ) -> Result<(), OpError> {
        if by.trim().is_empty() {
            return Err(OpError::Invalid("`by`: who acknowledges must be given".into()));
        }
        let mut a = self.load(id)?;
        match a.state {
            AlertState::Resolved => return Err(OpError::Conflict(format!("alert {id} is resolved"))),
            AlertState::Acked | AlertState::Disposed => {
                return Err(OpError::Conflict(format!(
                    "alert {id} was already acknowledged by {}",
                    a.acked_by.as_deref().unwrap_or("?")
                )))
            }
            AlertState::Pending | AlertState::Firing => {}
        }
        a.state = AlertState::Acked;
        a.acked_at = Some(now);
        a.acked_by = Some(by.to_string());
        a.next_repeat_at = None;
        a.next_escalation_at = None;
        a.next_voice_at = None;
        a.updated_at = now;
        self.save(&a, &[Event::new(now, "acked", a.level).by(Some(by), note)])
    }

    pub(super) fn dispose(&mut self, id: i64, by: &str, note: &str, now: TimestampNs) -> Result<(), OpError> {
        if by.trim().is_empty() {
            return Err(OpError::Invalid("`by`: who disposed must be given".into()));
        }
        if note.trim().is_empty() {
            return Err(OpError::Invalid("`note`: say what was done (处置情况)".into()));
        }
        let mut a = self.load(id)?;
        if a.disposed_at.is_some() {
            return Err(OpError::Conflict(format!(
                "alert {id} was already disposed by {}",
                a.disposed_by.as_deref().unwrap_or("?")
            )));
        }
        let mut events = Vec::new();
        if a.acked_at.is_none() {
            a.acked_at = Some(now);
            a.acked_by = Some(by.to_string());
            events.push(Event::new(now, "acked", a.level).by(Some(by), None));
        }
        a.disposed_at = Some(now);
        a.disposed_by = Some(by.to_string());
        if a.state != AlertState::Resolved {
            a.state = AlertState::Disposed;
        }
        a.next_repeat_at = None;
        a.next_escalation_at = None;
        a.next_voice_at = None;
        a.updated_at = now;
        events.push(Event::new(now, "disposed", a.level).by(Some(by), Some(note)));
        self.save(&a, &events)
    }
}

/// The timeline's note when a rise rests on a suspect value that was confirmed.
fn suspect_note(a: &Alert) -> Option<String> {
    a.suspect.as_ref().map(|t| format!("质控：该值曾判为可疑（{t}），已由后续读数确认"))
}

/// The alert a site transition describes.
fn site_alert(c: &SiteChange, now: TimestampNs) -> Alert {
    Alert {
        kind: Some(AlertKind::Site),
        site: c.site.to_string(),
        site_name: c.site_name.to_string(),
        site_kind: c.kind.as_str().to_string(),
        street: c.street.to_string(),
        rule: c.rule.to_string(),
        rule_name: c.rule_name.to_string(),
        value: c.value,
        threshold: c.threshold,
        unit: c.unit.to_string(),
        card: c.card.clone(),
        trend_per_hour: c.trend.map(|t| t.per_hour),
        eta_level: c.eta.map(|e| e.level),
        eta_seconds: c.eta.map(|e| e.seconds),
        suspect: c.suspect.map(|t| t.name_zh().to_string()),
        started_at: now,
        updated_at: now,
        ..Alert::default()
    }
}

/// What a notice tells of `alert`: its state, for a street or district
/// alert the site alerts it stands for, and the depots for its card.
fn snapshot_of(active: &Active, supplies: &Supplies, places: &Places, alert: &Alert) -> AlertSnapshot {
    let mut snapshot = AlertSnapshot::from(alert);
    if matches!(alert.kind, Some(AlertKind::Street | AlertKind::District)) {
        snapshot.members = active
            .values()
            .filter(|a| a.kind == Some(AlertKind::Site))
            .filter(|a| alert.kind == Some(AlertKind::District) || a.street == alert.street)
            .filter_map(|a| Some(format!("{} {}", a.site_name, a.level?.roman())))
            .collect();
        snapshot.members.sort();
    }
    snapshot.supply = supplies.for_site(places, &alert.site, alert.card.as_deref());
    snapshot
}
