use super::*;

const T: Duration = Duration::from_secs(60);

fn is_sent(o: &Outcome) -> bool {
    matches!(o, Outcome::Sent { .. })
}

#[test]
fn http_answers() {
    assert!(is_sent(&http(200, None, "ok")));
    assert_eq!(
        http(429, Some("7"), ""),
        Outcome::Limited { hold: Hold::For(Duration::from_secs(7)), reason: "HTTP 429 ".into() }
    );
    assert!(matches!(http(429, None, ""), Outcome::Limited { hold: Hold::For(d), .. } if d == T));
    assert!(
        matches!(http(503, Some("3"), ""), Outcome::Retry { after: Some(a), .. } if a == Duration::from_secs(3))
    );
    assert!(matches!(http(500, None, ""), Outcome::Retry { after: None, .. }));
    assert!(matches!(http(401, None, "no key"), Outcome::Refused(r) if r.contains("no key")));
    assert!(matches!(http(403, None, ""), Outcome::Refused(_)));
    assert!(matches!(http(413, None, ""), Outcome::TooLarge(_)));
    assert!(matches!(http(400, None, "bad number"), Outcome::Failed(r) if r.contains("bad number")));
}

#[test]
#[allow(clippy::type_complexity)]
fn robot_answers() {
    let table: &[(&str, fn(u16, &str, Duration) -> Outcome, u16, &str, &str)] = &[
        ("wecom", wecom, 200, r#"{"errcode":0,"errmsg":"ok"}"#, "sent"),
        ("wecom", wecom, 200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#, "throttled"),
        ("wecom", wecom, 200, r#"{"errcode":-1}"#, "retry"),
        (
            "wecom",
            wecom,
            200,
            r#"{"errcode":40058,"errmsg":"markdown.content exceed max length 4096"}"#,
            "split",
        ),
        ("wecom", wecom, 200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#, "refused"),
        ("wecom", wecom, 502, "", "retry"),
        ("dingtalk", dingtalk, 200, r#"{"errcode":0}"#, "sent"),
        ("dingtalk", dingtalk, 200, r#"{"errcode":130101,"errmsg":"send too fast"}"#, "throttled"),
        ("dingtalk", dingtalk, 200, r#"{"errcode":310000,"errmsg":"sign not match"}"#, "refused"),
        ("dingtalk", dingtalk, 200, r#"{"errcode":300001,"errmsg":"token is not exist"}"#, "refused"),
        ("dingtalk", dingtalk, 200, r#"{"errcode":460101,"errmsg":"message too long"}"#, "split"),
        ("dingtalk", dingtalk, 200, r#"{"errcode":400105,"errmsg":"keywords not in content"}"#, "failed"),
        ("dingtalk", dingtalk, 413, "", "split"),
    ];
    for (robot, f, status, body, want) in table {
        assert_eq!(f(*status, body, T).label(), *want, "{robot} {status} {body}");
    }
    assert_eq!(
        dingtalk(200, r#"{"errcode":130101}"#, Duration::from_secs(600)),
        Outcome::Limited {
            hold: Hold::For(Duration::from_secs(600)),
            reason: r#"{"errcode":130101}"#.into()
        }
    );
}

#[test]
fn aliyun_answers() {
    let sent = aliyun(200, r#"{"Code":"OK","BizId":"900619746936498440^0","RequestId":"x"}"#);
    assert_eq!(
        sent,
        Outcome::Sent {
            answer: r#"{"Code":"OK","BizId":"900619746936498440^0","RequestId":"x"}"#.into(),
            id: Some("900619746936498440^0".into())
        }
    );
    let call = aliyun(200, r#"{"Code":"OK","CallId":"116012354148^10281378","RequestId":"x"}"#);
    assert!(matches!(call, Outcome::Sent { id: Some(i), .. } if i == "116012354148^10281378"));
    let limited =
        |m: &str| aliyun(200, &format!(r#"{{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"{m}"}}"#));
    assert!(
        matches!(limited("触发分钟级流控Permits:1"), Outcome::Limited { hold: Hold::Window(w), .. } if w == MINUTE)
    );
    assert!(
        matches!(limited("触发小时级流控Permits:5"), Outcome::Limited { hold: Hold::Window(w), .. } if w == HOUR)
    );
    assert!(
        matches!(limited("触发天级流控Permits:10"), Outcome::Limited { hold: Hold::Window(w), .. } if w == DAY)
    );
    assert!(matches!(limited(""), Outcome::Limited { hold: Hold::Window(w), .. } if w == MINUTE));
    for code in ["InvalidAccessKeyId.NotFound", "SignatureDoesNotMatch", "Forbidden.RAM"] {
        assert_eq!(aliyun(400, &format!(r#"{{"Code":"{code}"}}"#)).label(), "refused", "{code}");
    }
    assert_eq!(aliyun(200, r#"{"Code":"isv.MOBILE_NUMBER_ILLEGAL"}"#).label(), "failed");
    assert_eq!(aliyun(200, r#"{"Code":"isp.SYSTEM_ERROR"}"#).label(), "retry");
    assert_eq!(aliyun(503, "").label(), "retry");
    assert_eq!(aliyun(403, "").label(), "refused");
}

#[test]
fn tencent_answers() {
    let ok = r#"{"Response":{"SendStatusSet":[{"Code":"Ok","SerialNo":"5000:104571066915705365784949619"}],"RequestId":"x"}}"#;
    assert!(
        matches!(tencent(200, ok), Outcome::Sent { id: Some(s), .. } if s == "5000:104571066915705365784949619")
    );
    let voice =
        r#"{"Response":{"SendStatus":{"CallId":"12582bce-4b33","SessionContext":"k"},"RequestId":"x"}}"#;
    assert!(matches!(tencent(200, voice), Outcome::Sent { id: Some(s), .. } if s == "12582bce-4b33"));
    let status = |c: &str| tencent(200, &format!(r#"{{"Response":{{"SendStatusSet":[{{"Code":"{c}"}}]}}}}"#));
    assert!(
        matches!(status("LimitExceeded.PhoneNumberThirtySecondLimit"), Outcome::Limited { hold: Hold::Window(w), .. } if w == Duration::from_secs(30))
    );
    assert!(
        matches!(status("LimitExceeded.PhoneNumberOneHourLimit"), Outcome::Limited { hold: Hold::Window(w), .. } if w == HOUR)
    );
    assert!(
        matches!(status("LimitExceeded.PhoneNumberDailyLimit"), Outcome::Limited { hold: Hold::Window(w), .. } if w == DAY)
    );
    assert_eq!(status("InvalidParameterValue.IncorrectPhoneNumber").label(), "failed");
    let error = |c: &str| tencent(200, &format!(r#"{{"Response":{{"Error":{{"Code":"{c}"}}}}}}"#));
    assert_eq!(error("AuthFailure.SignatureFailure").label(), "refused");
    assert_eq!(error("AuthFailure.SecretIdNotFound").label(), "refused");
    assert_eq!(error("InternalError.Timeout").label(), "retry");
    assert_eq!(
        error("RequestLimitExceeded").label(),
        "retry",
        "the account's request rate is no recipient's budget"
    );
}

#[test]
fn aliyun_receipts() {
    let body = |status: i64, out: &str| {
        format!(
            r#"{{"Code":"OK","TotalCount":1,"SmsSendDetailDTOs":{{"SmsSendDetailDTO":[{{"PhoneNum":"13800000101","SendStatus":{status},"ErrCode":"DELIVERED","OutId":"{out}","BizId":"1^0"}}]}}}}"#
        )
    };
    let found = |r| Report::Found { receipt: r, note: "DELIVERED".into(), id: Some("1^0".into()) };
    assert_eq!(aliyun_details(200, &body(3, "k1"), "k1", None), found(Receipt::Delivered));
    assert_eq!(aliyun_details(200, &body(2, "k1"), "k1", None), found(Receipt::Failed));
    assert_eq!(aliyun_details(200, &body(1, "k1"), "k1", None), found(Receipt::Waiting));
    assert_eq!(aliyun_details(200, &body(3, "other"), "k1", None), Report::NotFound);
    assert_eq!(aliyun_details(200, &body(3, "other"), "k1", Some("1^0")), found(Receipt::Delivered));
    let empty = r#"{"Code":"OK","TotalCount":0,"SmsSendDetailDTOs":{"SmsSendDetailDTO":[]}}"#;
    assert_eq!(aliyun_details(200, empty, "k1", None), Report::NotFound);
    assert!(matches!(
        aliyun_details(400, r#"{"Code":"SignatureDoesNotMatch"}"#, "k1", None),
        Report::QueryFailed(_)
    ));
}

#[test]
fn tencent_pulls() {
    let body = r#"{"Response":{"PullSmsSendStatusSet":[
        {"Description":"DELIVRD","ReportStatus":"SUCCESS","PhoneNumber":"+8613800000101","SerialNo":"5000:1","SessionContext":"k1"},
        {"Description":"MK:0001","ReportStatus":"FAIL","PhoneNumber":"+8613800000102","SerialNo":"5000:2","SessionContext":"k2"}],
        "RequestId":"x"}}"#;
    let got = tencent_pulled(200, body).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].receipt, got[0].session.as_str()), (Receipt::Delivered, "k1"));
    assert_eq!(
        (got[1].receipt, got[1].note.as_str(), got[1].serial_no.as_str()),
        (Receipt::Failed, "MK:0001", "5000:2")
    );
    assert!(tencent_pulled(200, r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure"}}}"#).is_err());
}

#[test]
fn call_results() {
    for (code, want) in [
        ("200000", Receipt::Answered),
        ("200001", Receipt::Answered),
        ("200002", Receipt::Busy),
        ("200003", Receipt::NoAnswer),
        ("200010", Receipt::Unreachable),
        ("200005", Receipt::Unreachable),
        ("200101", Receipt::Waiting),
        ("200201", Receipt::Waiting),
    ] {
        assert_eq!(aliyun_call_state(code), want, "{code}");
    }
    let body = r#"{"Code":"OK","Data":"{\"callId\":\"116012354148^10281378\",\"state\":\"200002\",\"stateDesc\":\"用户占线\",\"duration\":0}"}"#;
    assert_eq!(
        aliyun_call_detail(200, body),
        Report::Found {
            receipt: Receipt::Busy,
            note: "用户占线".into(),
            id: Some("116012354148^10281378".into())
        }
    );
    assert_eq!(aliyun_call_detail(200, r#"{"Code":"OK","Data":null}"#), Report::NotFound);
    let cb =
        r#"{"voiceprompt_callback":{"result":"1","callid":"c-1","mobile":"13800000101","nationcode":"86"}}"#;
    assert_eq!(tencent_voice_callback(cb), Some(("c-1".into(), Receipt::NoAnswer, "result 1".into())));
    assert_eq!(tencent_voice_callback("{}"), None);
}
