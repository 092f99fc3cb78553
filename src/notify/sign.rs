//! Request signatures of the SMS providers and the DingTalk robot, as pure
//! functions tested against the providers' documented examples.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Aliyun's percent-encoding (POP): RFC 3986 unreserved kept, everything
/// else as `%XX` — space as `%20`, `*` as `%2A`, `~` kept.
pub fn aliyun_encode(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// The canonical query of an Aliyun RPC request: parameters sorted by name,
/// names and values encoded, joined with `&` (`Signature` left out).
pub fn aliyun_canonical_query(params: &[(&str, &str)]) -> String {
    let mut p: Vec<(&str, &str)> = params.iter().copied().filter(|(k, _)| *k != "Signature").collect();
    p.sort_by(|a, b| a.0.cmp(b.0));
    p.iter().map(|(k, v)| format!("{}={}", aliyun_encode(k), aliyun_encode(v))).collect::<Vec<_>>().join("&")
}

/// Aliyun RPC signature (SignatureVersion 1.0, HMAC-SHA1): base64 of
/// HMAC-SHA1(secret + "&", method + "&" + enc("/") + "&" + enc(canonical query)).
pub fn aliyun_signature(method: &str, params: &[(&str, &str)], secret: &str) -> String {
    let to_sign =
        format!("{method}&{}&{}", aliyun_encode("/"), aliyun_encode(&aliyun_canonical_query(params)));
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("any key length");
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hmac256(key: &[u8], msg: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// What a TC3-HMAC-SHA256 signature covers (a POST with a JSON body).
pub struct Tc3<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a str,
    pub service: &'a str,
    pub host: &'a str,
    pub content_type: &'a str,
    pub payload: &'a str,
    pub timestamp: i64,
}

impl Tc3<'_> {
    pub fn canonical_request(&self) -> String {
        format!(
            "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
            self.content_type,
            self.host,
            hex::encode(Sha256::digest(self.payload.as_bytes()))
        )
    }

    fn date(&self) -> String {
        chrono::DateTime::from_timestamp(self.timestamp, 0)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
    }

    pub fn string_to_sign(&self) -> String {
        format!(
            "TC3-HMAC-SHA256\n{}\n{}/{}/tc3_request\n{}",
            self.timestamp,
            self.date(),
            self.service,
            hex::encode(Sha256::digest(self.canonical_request().as_bytes()))
        )
    }

    pub fn signature(&self) -> String {
        let k_date = hmac256(format!("TC3{}", self.secret_key).as_bytes(), &self.date());
        let k_service = hmac256(&k_date, self.service);
        let k_signing = hmac256(&k_service, "tc3_request");
        hex::encode(hmac256(&k_signing, &self.string_to_sign()))
    }

    /// The `Authorization` header.
    pub fn authorization(&self) -> String {
        format!(
            "TC3-HMAC-SHA256 Credential={}/{}/{}/tc3_request, SignedHeaders=content-type;host, Signature={}",
            self.secret_id,
            self.date(),
            self.service,
            self.signature()
        )
    }
}

/// DingTalk robot 加签: `sign = base64(HMAC-SHA256(secret, timestamp + "\n" + secret))`,
/// URL-encoded into the query with `timestamp` (ms).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mac = hmac256(secret.as_bytes(), &format!("{timestamp_ms}\n{secret}"));
    base64::engine::general_purpose::STANDARD.encode(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aliyun's SendSms documentation example.
    const SEND_SMS: [(&str, &str); 14] = [
        ("AccessKeyId", "testId"),
        ("Action", "SendSms"),
        ("Format", "XML"),
        ("OutId", "123"),
        ("PhoneNumbers", "15300000001"),
        ("RegionId", "cn-hangzhou"),
        ("SignName", "阿里云短信测试专用"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
        ("SignatureVersion", "1.0"),
        ("TemplateCode", "SMS_71390007"),
        ("TemplateParam", "{\"customer\":\"test\"}"),
        ("Timestamp", "2017-07-12T02:42:19Z"),
        ("Version", "2017-05-25"),
    ];

    #[test]
    fn aliyun_send_sms_documented_example() {
        assert_eq!(aliyun_signature("GET", &SEND_SMS, "testSecret"), "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
        // Order of the given parameters does not matter; a stale Signature is ignored.
        let mut shuffled: Vec<(&str, &str)> = SEND_SMS.iter().rev().copied().collect();
        shuffled.push(("Signature", "stale"));
        assert_eq!(aliyun_signature("GET", &shuffled, "testSecret"), "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
    }

    #[test]
    fn aliyun_rpc_documented_example() {
        // The RPC signature documentation's DescribeRegions example.
        let p = [
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Version", "2014-05-26"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
        ];
        assert_eq!(aliyun_signature("GET", &p, "testsecret"), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    #[test]
    fn aliyun_encoding_rules() {
        assert_eq!(aliyun_encode("a b*c~d"), "a%20b%2Ac~d");
        assert_eq!(aliyun_encode("/=&+"), "%2F%3D%26%2B");
        assert_eq!(aliyun_encode("派"), "%E6%B4%BE");
    }

    /// Tencent Cloud's API 3.0 signature documentation example (CVM
    /// DescribeInstances, POST, timestamp 1551113065).
    fn tencent_doc() -> Tc3<'static> {
        Tc3 {
            secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            secret_key: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            payload: r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
            timestamp: 1551113065,
        }
    }

    #[test]
    fn tencent_tc3_documented_example() {
        let t = tencent_doc();
        assert_eq!(
            t.string_to_sign(),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(t.signature(), "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168");
        assert_eq!(
            t.authorization(),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn dingtalk_signs_timestamp_and_secret() {
        let a = dingtalk_sign("SEC000", 1_700_000_000_000);
        assert_eq!(a, dingtalk_sign("SEC000", 1_700_000_000_000));
        assert_ne!(a, dingtalk_sign("SEC000", 1_700_000_000_001));
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&a).unwrap().len(), 32);
    }
}
