//! Robot rows reference their robot by name instead of copying it: a
//! WeCom or DingTalk webhook URL carries the robot's key, and a DingTalk
//! signing secret is a key too, so neither is written into `state.db`.
//! The row's `to` is `robot:<team>#<n>` (the team's n-th `[[teams.robots]]`,
//! as `recipient` names it for rate limits); the URL and secret are looked
//! up in the running teams.toml when the message goes out. A robot removed
//! by a reload fails its queued rows with a clear reason.

use std::borrow::Cow;

use super::outbox::Body;
use crate::config::TeamsFile;

const PREFIX: &str = "robot:";

/// The reference stored in a row's `to` for robot `n` of `team`.
pub fn reference(team: &str, n: usize) -> String {
    format!("{PREFIX}{team}#{n}")
}

/// The body to send: a robot reference filled in from `teams` (the stored
/// row keeps only the reference); any other body as it is.
pub fn resolve<'a>(teams: &TeamsFile, body: &'a Body) -> Result<Cow<'a, Body>, String> {
    let Some(name) = body.to.strip_prefix(PREFIX) else {
        return Ok(Cow::Borrowed(body));
    };
    let robot = name.rsplit_once('#').and_then(|(team, n)| {
        let n: usize = n.parse().ok()?;
        teams.team(team)?.robots.get(n)
    });
    match robot {
        Some(r) => Ok(Cow::Owned(Body {
            to: r.url.expose().to_string(),
            secret: r.secret.as_ref().map(|s| s.expose().to_string()),
            ..body.clone()
        })),
        None => Err(format!("robot {name} is no longer in teams.toml")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Robot, RobotKind, Secret, Team};
    use crate::notify::message::Rendered;

    fn teams() -> TeamsFile {
        let team: Team = toml::from_str(
            "id = \"cd\"\nname = \"城东\"\nstreets = [\"chengdong\"]\n\
             [[robots]]\nkind = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K1\"\n",
        )
        .unwrap();
        let mut team = team;
        team.robots.push(Robot {
            kind: RobotKind::Dingtalk,
            url: Secret::new("https://oapi.dingtalk.com/robot/send?access_token=T2"),
            secret: Some(Secret::new("SEC-signing")),
        });
        TeamsFile { teams: vec![team], ..Default::default() }
    }

    fn body(to: &str) -> Body {
        Body {
            rendered: Rendered::default(),
            to: to.into(),
            secret: None,
            alert_ids: vec![1],
            merged: 1,
            labels: vec![],
        }
    }

    #[test]
    fn a_reference_is_filled_in_at_send_time_only() {
        let t = teams();
        let b = body(&reference("cd", 1));
        assert!(!serde_json::to_string(&b).unwrap().contains("access_token"), "the row holds no key");
        let sent = resolve(&t, &b).unwrap();
        assert_eq!(sent.to, "https://oapi.dingtalk.com/robot/send?access_token=T2");
        assert_eq!(sent.secret.as_deref(), Some("SEC-signing"));
        assert!(resolve(&t, &reference_body("cd", 0)).unwrap().to.ends_with("key=K1"));
        let gone = resolve(&t, &reference_body("cd", 5)).unwrap_err();
        assert!(gone.contains("cd#5") && gone.contains("no longer"), "{gone}");
        // A phone number or an address is not a reference.
        assert_eq!(resolve(&t, &body("13800000901")).unwrap().to, "13800000901");
    }

    fn reference_body(team: &str, n: usize) -> Body {
        body(&reference(team, n))
    }
}
