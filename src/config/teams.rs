//! `teams.toml`: the rescue teams (抢险队), who is in them and how to reach them.

use std::collections::HashSet;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::{HumanDuration, Secret};
use crate::level::Level;

string_enum! {
    /// A member's part in the team and in the escalation chain.
    pub enum Role ("role") {
        /// 队长
        Leader = "leader",
        /// 队员
        Member = "member",
        /// 街道防汛联络员
        Liaison = "liaison",
        /// 街道防汛办主任 / 街道主任
        StreetDirector = "street_director",
        /// 区防汛指挥部
        DistrictHq = "district_hq",
        /// 区值班员
        DutyOfficer = "duty_officer",
    }
}

impl Role {
    pub fn name_zh(self) -> &'static str {
        match self {
            Role::Leader => "队长",
            Role::Member => "队员",
            Role::Liaison => "联络员",
            Role::StreetDirector => "街道主任",
            Role::DistrictHq => "区防汛指挥部",
            Role::DutyOfficer => "值班员",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub name: String,
    pub role: Role,
    /// Mobile number for SMS, `+86…` or 11 digits.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// The lowest level this member is told about; the team's when absent.
    pub min_level: Option<Level>,
    /// `sms`, `email`, `voice`: how to reach them; every one they have an
    /// address for when absent.
    pub channels: Option<Vec<String>>,
}

/// `[[teams.roster]]`: a shift of the duty roster (值班表). A member with
/// shifts is told only during them; one without is always told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Shift {
    pub member: String,
    /// Weekdays (`mon` … `sun`), or …
    #[serde(default)]
    pub days: Vec<String>,
    /// … dates (`2026-07-21`).
    #[serde(default)]
    pub dates: Vec<String>,
    /// `08:00`; with `to` before `from` the shift runs past midnight.
    pub from: String,
    pub to: String,
}

string_enum! {
    pub enum RobotKind ("robot kind") {
        /// 企业微信群机器人
        Wecom = "wecom",
        /// 钉钉群机器人
        Dingtalk = "dingtalk",
        /// Any endpoint taking floodguard's JSON.
        Webhook = "webhook",
    }
}

/// A group-chat robot the team's group listens to.
#[derive(Debug, Clone, Deserialize)]
pub struct Robot {
    pub kind: RobotKind,
    /// Webhook URL; it carries the robot's key, so give it through a file or env.
    pub url: Secret,
    /// DingTalk signing secret (加签).
    pub secret: Option<Secret>,
}

/// `[[teams]]`: one rescue team.
#[derive(Debug, Clone, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    /// The units the team is drawn from.
    pub unit: Option<String>,
    /// Street ids the team covers.
    pub streets: Vec<String>,
    /// The lowest level the team is told about.
    #[serde(default = "lowest")]
    pub min_level: Level,
    pub headcount: Option<u32>,
    /// Equipment on hand (移动泵车 …), for the plan card and the report.
    #[serde(default)]
    pub equipment: Vec<String>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub robots: Vec<Robot>,
    /// The team's own escalation chain; `[alerting].chain` when absent.
    pub chain: Option<Vec<Role>>,
    #[serde(default)]
    pub roster: Vec<Shift>,
}

fn lowest() -> Level {
    Level::IV
}

/// `[alerting]`: how alerts are followed up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Alerting {
    /// Intents for one team within this window go out as one message.
    pub group_window: HumanDuration,
    /// How long the first notice of a rise to a level may wait for others
    /// to join it (0 s: at once).
    pub group_wait: BTreeMap<Level, HumanDuration>,
    /// Storm mode: after a team was told, its next message waits at least
    /// this long, gathering whatever changed meanwhile (the first message
    /// after a quiet spell still goes as `group_wait` says). 0 s (unset): off;
    /// the sample district sets 10 s.
    pub storm_gap: HumanDuration,
    /// Unacked alerts are sent again this often.
    pub repeat: BTreeMap<Level, HumanDuration>,
    /// Unacked after this long: the next tier of the chain is told.
    pub escalate_after: BTreeMap<Level, HumanDuration>,
    /// Who is told as an alert stays unacked, in order.
    pub chain: Vec<Role>,
    /// While a street is alerted, its sites' alerts at or below the street's
    /// level go out as part of the street's notice, not on their own.
    pub fold_sites_into_street: bool,
    /// Device-offline alerts notify the team (as level Ⅳ).
    pub notify_offline: bool,
    /// An alert at one of `voice_levels` unacknowledged this long calls the
    /// on-duty leader, then the next tier of the chain every `voice_after`
    /// ( `[channels.voice]`). A person is called at most once per alert and level.
    pub voice_after: HumanDuration,
    pub voice_levels: Vec<Level>,
    /// Where a Ⅱ/Ⅰ notice goes when its SMS cannot carry it (the budget is
    /// spent, the handset reports a failure, no receipt in time): the first
    /// of these the member has (`voice` only at `voice_levels`); with none
    /// left, the next person in the chain.
    pub fallback: Vec<FallbackChannel>,
}

string_enum! {
    /// A channel a Ⅱ/Ⅰ notice may fall back to.
    pub enum FallbackChannel ("fallback channel") {
        /// A phone call (`[channels.voice]`).
        Voice = "voice",
        /// The team's group robots.
        Robot = "robot",
        Email = "email",
        Sms = "sms",
    }
}

impl Default for Alerting {
    fn default() -> Self {
        let per_level = |v: [u64; 4]| Level::ALL.iter().copied().zip(v.map(HumanDuration::secs)).collect();
        Alerting {
            group_window: HumanDuration::secs(30),
            group_wait: per_level([30, 30, 0, 0]),
            storm_gap: HumanDuration::secs(0),
            repeat: per_level([7200, 3600, 1800, 900]),
            escalate_after: per_level([3600, 1800, 900, 600]),
            chain: vec![Role::Leader, Role::StreetDirector, Role::DistrictHq],
            fold_sites_into_street: false,
            notify_offline: true,
            voice_after: HumanDuration::secs(300),
            voice_levels: vec![Level::I],
            fallback: vec![FallbackChannel::Voice, FallbackChannel::Robot, FallbackChannel::Email],
        }
    }
}

impl Alerting {
    fn at(map: &BTreeMap<Level, HumanDuration>, level: Level, fallback: u64) -> std::time::Duration {
        map.get(&level).map_or(std::time::Duration::from_secs(fallback), |d| d.get())
    }
    pub fn group_wait(&self, level: Level) -> std::time::Duration {
        Self::at(&self.group_wait, level, 0)
    }
    pub fn repeat(&self, level: Level) -> std::time::Duration {
        Self::at(&self.repeat, level, 3600)
    }
    pub fn escalate_after(&self, level: Level) -> std::time::Duration {
        Self::at(&self.escalate_after, level, 1800)
    }
}

/// `[[silences]]`: a maintenance window known in advance (泵站检修).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SilenceConfig {
    pub site: Option<String>,
    pub rule: Option<String>,
    pub street: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339 with offset.
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// The contents of `teams.toml`.
#[derive(Debug, Clone, Default)]
pub struct TeamsFile {
    pub teams: Vec<Team>,
    pub alerting: Alerting,
    pub silences: Vec<SilenceConfig>,
    /// `[hq]`: the flood HQ and its member units (成员单位).
    pub hq: Option<super::readiness::Hq>,
    /// `[[maintenance]]`: who looks after the monitoring equipment (监测设备
    /// 运维), per street or for the whole district — told about suspected
    /// sensor faults and broken collection links, never about flood levels;
    /// the rescue teams are not told about sensor faults. Same shape as a
    /// team; no escalation chain unless one is given.
    pub maintenance: Vec<Team>,
}

impl TeamsFile {
    /// A rescue team or a maintenance contact, by id.
    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.iter().chain(&self.maintenance).find(|t| t.id == id)
    }

    /// Is `id` a maintenance contact (`[[maintenance]]`)?
    pub fn is_maintenance(&self, id: &str) -> bool {
        self.maintenance.iter().any(|t| t.id == id)
    }
}

/// Semantic checks of `teams.toml` against the known street ids; each problem
/// as `(key path, reason)`.
/// Which member channels `[channels]` of floodguard.toml configures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reach {
    pub sms: bool,
    pub email: bool,
    pub voice: bool,
}

pub fn validate(file: &TeamsFile, streets: &HashSet<&str>, reach: Reach) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut ids = HashSet::new();
    let all = file.teams.iter().enumerate().map(|(i, t)| ("teams", i, t));
    let all = all.chain(file.maintenance.iter().enumerate().map(|(i, t)| ("maintenance", i, t)));
    for (table, i, t) in all {
        let at = |k: &str| format!("{table}[{i}].{k}");
        if !super::sites::is_valid_id(&t.id) {
            errs.push((at("id"), format!("invalid id {:?}: use A-Z a-z 0-9 - _ .", t.id)));
        }
        if !ids.insert(t.id.as_str()) {
            errs.push((at("id"), format!("duplicate team id {:?}", t.id)));
        }
        if t.streets.is_empty() {
            errs.push((at("streets"), "a team must cover at least one street".into()));
        }
        for (j, s) in t.streets.iter().enumerate() {
            if !streets.contains(s.as_str()) {
                errs.push((at(&format!("streets[{j}]")), format!("unknown street {s:?}")));
            }
        }
        for (j, m) in t.members.iter().enumerate() {
            let at = |k: &str| format!("{table}[{i}].members[{j}].{k}");
            if let Some(phone) = &m.phone {
                if !is_phone(phone) {
                    errs.push((at("phone"), format!("{phone:?} is not a phone number")));
                }
            }
            if let Some(email) = &m.email {
                if !is_email(email) {
                    errs.push((at("email"), format!("{email:?} is not an e-mail address")));
                }
            }
            for (k, c) in m.channels.iter().flatten().enumerate() {
                let has = match c.as_str() {
                    "sms" | "voice" => m.phone.is_some(),
                    "email" => m.email.is_some(),
                    _ => {
                        errs.push((
                            at(&format!("channels[{k}]")),
                            format!("unknown channel {c:?}: use sms, email, voice"),
                        ));
                        continue;
                    }
                };
                if !has {
                    let what = if c == "email" { "email" } else { "phone" };
                    errs.push((
                        at(&format!("channels[{k}]")),
                        format!("{c} is asked for but the member has no {what}"),
                    ));
                }
            }
        }
        for (j, shift) in t.roster.iter().enumerate() {
            for (k, reason) in crate::roster::check(t, shift) {
                errs.push((at(&format!("roster[{j}].{k}")), reason));
            }
        }
        let wants = |m: &Member, c: &str| m.channels.as_ref().is_none_or(|cs| cs.iter().any(|x| x == c));
        let reachable = !t.robots.is_empty()
            || t.members.iter().any(|m| {
                (reach.sms && m.phone.is_some() && wants(m, "sms"))
                    || (reach.email && m.email.is_some() && wants(m, "email"))
            });
        if !reachable {
            let mut unused = Vec::new();
            if !reach.sms && t.members.iter().any(|m| m.phone.is_some()) {
                unused.push("phones are given but floodguard.toml has no [channels.sms]");
            }
            if !reach.email && t.members.iter().any(|m| m.email.is_some()) {
                unused.push("e-mail addresses are given but floodguard.toml has no [channels.email]");
            }
            let why = if unused.is_empty() { String::new() } else { format!(" ({})", unused.join("; ")) };
            errs.push((
                at("members"),
                format!(
                    "team {:?} has no way to reach anyone{why}: give a member a phone or e-mail on a configured \
                     channel, or add a robot",
                    t.id
                ),
            ));
        }
    }
    if file.alerting.chain.is_empty() {
        errs.push(("alerting.chain".into(), "the escalation chain needs at least one role".into()));
    }
    if file.alerting.voice_after.get().is_zero() {
        errs.push((
            "alerting.voice_after".into(),
            "must be more than 0 s: give people a moment to ack".into(),
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in file.alerting.fallback.iter().enumerate() {
        if !seen.insert(*c) {
            errs.push((format!("alerting.fallback[{i}]"), format!("{c} is listed twice")));
        }
    }
    for (i, sc) in file.silences.iter().enumerate() {
        let at = |k: &str| format!("silences[{i}].{k}");
        let start = chrono::DateTime::parse_from_rfc3339(&sc.starts_at);
        let end = chrono::DateTime::parse_from_rfc3339(&sc.ends_at);
        if let Err(e) = &start {
            errs.push((at("starts_at"), format!("{:?} is not RFC 3339 with an offset: {e}", sc.starts_at)));
        }
        if let Err(e) = &end {
            errs.push((at("ends_at"), format!("{:?} is not RFC 3339 with an offset: {e}", sc.ends_at)));
        }
        if let (Ok(a), Ok(b)) = (start, end) {
            if b <= a {
                errs.push((at("ends_at"), "must be after starts_at".into()));
            }
        }
        if let Some(k) = sc.kind.as_ref().filter(|k| k.parse::<super::Kind>().is_err()) {
            errs.push((
                at("kind"),
                format!("{k:?} is not a site kind (waterlogging, rain_gauge, river, pump_station, manhole)"),
            ));
        }
        if let Some(st) = sc.street.as_ref().filter(|st| !streets.contains(st.as_str())) {
            errs.push((at("street"), format!("no street {st:?} in sites.toml")));
        }
        if sc.site.is_none() && sc.rule.is_none() && sc.street.is_none() && sc.kind.is_none() {
            errs.push((
                format!("silences[{i}]"),
                "a silence needs a matcher: site, rule, street or kind".into(),
            ));
        }
        if sc.comment.trim().is_empty() || sc.created_by.trim().is_empty() {
            errs.push((format!("silences[{i}]"), "say who silenced it and why (created_by, comment)".into()));
        }
    }
    errs
}

pub(super) fn is_phone(s: &str) -> bool {
    let digits: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = digits.strip_prefix('+').unwrap_or(&digits);
    (5..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, host)) => !user.is_empty() && host.contains('.') && !s.contains(char::is_whitespace),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_emails() {
        assert!(is_phone("+86 138 0000 0001"));
        assert!(is_phone("13800000001"));
        assert!(!is_phone("call me"));
        assert!(is_email("team1@example.gov.cn"));
        assert!(!is_email("team1.example.gov.cn"));
        assert!(!is_email("a b@x.cn"));
    }

    #[test]
    fn a_team_nobody_can_reach_is_refused() {
        let team = Team {
            id: "t".into(),
            name: "T".into(),
            unit: None,
            streets: vec!["a".into(), "zz".into()],
            min_level: Level::IV,
            headcount: None,
            equipment: vec![],
            members: vec![Member {
                name: "x".into(),
                role: Role::Leader,
                phone: None,
                email: None,
                min_level: None,
                channels: None,
            }],
            robots: vec![],
            chain: None,
            roster: vec![],
        };
        let errs = validate(
            &TeamsFile { teams: vec![team], ..TeamsFile::default() },
            &HashSet::from(["a"]),
            Reach { sms: true, email: true, voice: false },
        );
        let keys: Vec<_> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["teams[0].streets[1]", "teams[0].members"]);
    }

    fn one_member(member: &str) -> TeamsFile {
        let team: Team = toml::from_str(&format!(
            "id = \"t\"\nname = \"T\"\nstreets = [\"a\"]\nmembers = [{{ name = \"x\", role = \"leader\", {member} }}]"
        ))
        .unwrap();
        TeamsFile { teams: vec![team], ..TeamsFile::default() }
    }

    #[test]
    fn a_team_reachable_only_on_unconfigured_channels_is_refused() {
        let streets = HashSet::from(["a"]);
        let phone_only = one_member("phone = \"13800000001\"");
        assert!(validate(&phone_only, &streets, Reach { sms: true, email: false, voice: false }).is_empty());
        let errs = validate(&phone_only, &streets, Reach { sms: false, email: true, voice: false });
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "teams[0].members");
        assert!(errs[0].1.contains("no [channels.sms]"), "{}", errs[0].1);

        let email_but_sms_only =
            one_member("phone = \"13800000001\", email = \"x@example.cn\", channels = [\"email\"]");
        let errs = validate(&email_but_sms_only, &streets, Reach { sms: true, email: false, voice: false });
        assert_eq!(errs.len(), 1, "the member asked for e-mail only: {errs:?}");
    }

    #[test]
    fn member_channels_need_an_address() {
        let errs = validate(
            &one_member("phone = \"13800000001\", channels = [\"sms\", \"email\", \"fax\"]"),
            &HashSet::from(["a"]),
            Reach { sms: true, email: true, voice: false },
        );
        let keys: Vec<_> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["teams[0].members[0].channels[1]", "teams[0].members[0].channels[2]"]);
    }
}
