//! Semantic checks of `[channels.*]` beyond what `daemon_check` does for
//! the SMS and e-mail connections: carrier budgets, receipts, phone calls
//! and the IT contact, each problem by key path.

use super::daemon::*;

/// A carrier budget's windows: each allows at least one message per a
/// length of time.
fn windows(key: &str, w: &[Window], err: &mut impl FnMut(&str, String)) {
    for (i, w) in w.iter().enumerate() {
        if w.max == 0 {
            err(
                &format!("{key}[{i}].max"),
                "must be at least 1 (leave the window out to have no limit)".into(),
            );
        }
        if w.per.get().is_zero() {
            err(&format!("{key}[{i}].per"), "must be more than 0 s".into());
        }
    }
}

/// Budgets, receipts, voice calls and the IT contact of `[channels.*]`.
pub(super) fn channels(c: &ChannelsSection, err: &mut impl FnMut(&str, String)) {
    const PARAMS: [&str; 5] = ["street", "site", "level", "value", "action"];
    if let Some(sms) = &c.sms {
        if sms.budget.is_some() && sms.min_interval.is_some() {
            err(
                "channels.sms.min_interval",
                "give either min_interval or budget: write the minute window into budget".into(),
            );
        }
        if let Some(b) = &sms.budget {
            windows("channels.sms.budget", b, err);
        }
        if sms.receipt_poll.get().is_zero() {
            err("channels.sms.receipt_poll", "must be more than 0 s".into());
        }
        if sms.receipt_timeout.get().is_zero() {
            err("channels.sms.receipt_timeout", "must be more than 0 s".into());
        }
    }
    if let Some(v) = &c.voice {
        let k = |key: &str| format!("channels.voice.{key}");
        match v.provider {
            VoiceProvider::Http => {
                if v.url.is_none() {
                    err(&k("url"), "provider = \"http\" needs a url".into());
                }
                if v.fields.is_empty() {
                    err(&k("fields"), "provider = \"http\" needs body fields, e.g. { called = \"{phone}\", tts = \"{text}\" }".into());
                }
            }
            VoiceProvider::Log => {}
            VoiceProvider::Aliyun | VoiceProvider::Tencent => {
                for (key, present) in [
                    ("key_id", v.key_id.is_some()),
                    ("key_secret", v.key_secret.is_some()),
                    ("template", v.template.is_some()),
                ] {
                    if !present {
                        err(&k(key), format!("provider = \"{}\" needs {key}", v.provider));
                    }
                }
                if v.provider == VoiceProvider::Tencent && v.app_id.is_none() {
                    err(&k("app_id"), "provider = \"tencent\" needs app_id (VoiceSdkAppid)".into());
                }
            }
        }
        if !(1..=3).contains(&v.play_times) {
            err(&k("play_times"), format!("{} is not 1, 2 or 3", v.play_times));
        }
        for (i, p) in v.template_params.iter().enumerate() {
            if !PARAMS.contains(&p.as_str()) {
                err(
                    &k(&format!("template_params[{i}]")),
                    format!("unknown parameter {p:?}: use street, site, level, value, action"),
                );
            }
        }
        windows("channels.voice.budget", &v.budget, err);
        // The callback's path is its only credential: as long as any token.
        if !v.callback_token.is_empty() {
            if let Some(p) = super::values::secret_problem(&v.callback_token) {
                err(&k("callback_token"), p);
            }
        }
        if v.result_poll.get().is_zero() {
            err(&k("result_poll"), "must be more than 0 s".into());
        }
    }
    if let Some(it) = &c.it_contact {
        if it.phone.is_none() && it.email.is_none() {
            err("channels.it_contact", "give a phone or an email (or leave the section out)".into());
        }
    }
}

#[cfg(test)]
mod channel_tests {
    use super::*;

    fn keys(toml_text: &str) -> Vec<String> {
        let c: DaemonConfig = toml::from_str(toml_text).unwrap();
        let mut errs = Vec::new();
        channels(&c.channels, &mut |k: &str, _r: String| errs.push(k.to_string()));
        errs
    }

    #[test]
    fn budgets_voice_and_the_it_contact_are_checked_by_key() {
        assert!(keys("[channels.sms]\nprovider = \"log\"\n").is_empty(), "defaults are fine");
        assert_eq!(
            keys(
                "[channels.sms]\nprovider = \"log\"\nmin_interval = \"60s\"\n\
                 budget = [{ max = 0, per = \"1h\" }, { max = 5, per = \"0s\" }]\nreceipt_timeout = \"0s\"\n"
            ),
            [
                "channels.sms.min_interval",
                "channels.sms.budget[0].max",
                "channels.sms.budget[1].per",
                "channels.sms.receipt_timeout"
            ]
        );
        assert_eq!(
            keys(
                "[channels.voice]\nprovider = \"tencent\"\nplay_times = 5\ntemplate_params = [\"weather\"]\n"
            ),
            [
                "channels.voice.key_id",
                "channels.voice.key_secret",
                "channels.voice.template",
                "channels.voice.app_id",
                "channels.voice.play_times",
                "channels.voice.template_params[0]"
            ]
        );
        assert_eq!(
            keys("[channels.voice]\nprovider = \"http\"\n"),
            ["channels.voice.url", "channels.voice.fields"]
        );
        assert_eq!(keys("[channels.it_contact]\nname = \"IT\"\n"), ["channels.it_contact"]);
    }

    #[test]
    fn the_sms_windows_say_the_same_in_both_ways() {
        let sms = |t: &str| toml::from_str::<DaemonConfig>(t).unwrap().channels.sms.unwrap().windows();
        assert_eq!(sms("[channels.sms]\nprovider = \"log\"\n"), SMS_BUDGET.to_vec(), "Aliyun's defaults");
        let paced = sms("[channels.sms]\nprovider = \"log\"\nmin_interval = \"5s\"\n");
        assert_eq!(paced, [Window::new(1, 5), Window::new(5, 3600), Window::new(10, 86_400)]);
        assert_eq!(
            sms("[channels.sms]\nprovider = \"log\"\nmin_interval = \"0s\"\n").len(),
            2,
            "no minute window"
        );
        assert!(sms("[channels.sms]\nprovider = \"log\"\nbudget = []\n").is_empty(), "no budget");
    }
}
