//! Ack links: a signed, expiring, single-use token in each message, so a
//! team lead acknowledges from the phone and the ack is recorded under the
//! member's name.
//!
//! `token = base64url(json {a: alert, m: member, e: expiry, n: nonce}) "."
//! base64url(HMAC-SHA256(secret, payload))`. The nonce is stored when the
//! link is made and marked when used: a second use is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::reading::TimestampNs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Alert id.
    pub a: i64,
    /// The member it was sent to.
    pub m: String,
    /// Expiry, seconds since the epoch.
    pub e: i64,
    /// Nonce (single use).
    pub n: String,
    /// A digest's link: every alert it acknowledges (`a` is the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub l: Vec<i64>,
}

impl Claims {
    /// The alerts the link acknowledges.
    pub fn alerts(&self) -> Vec<i64> {
        if self.l.is_empty() {
            vec![self.a]
        } else {
            self.l.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
    #[error("the link was already used")]
    Used,
}

fn mac(secret: &[u8], payload: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    m.update(payload.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Makes a token.
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let sig = URL_SAFE_NO_PAD.encode(mac(secret, &payload));
    format!("{payload}.{sig}")
}

/// Checks a token's signature and expiry (not its use).
pub fn verify(secret: &[u8], token: &str, now: TimestampNs) -> Result<Claims, TokenError> {
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    m.update(payload.as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if claims.e.saturating_mul(1_000_000_000) < now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// A fresh nonce.
pub fn nonce() -> String {
    let bytes: [u8; 12] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn claims() -> Claims {
        Claims { a: 42, m: "张队长".into(), e: 1_000, n: "abc".into(), l: vec![] }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let t = sign(b"k", &claims());
        assert_eq!(verify(b"k", &t, 999 * S), Ok(claims()));
        assert_eq!(verify(b"k", &t, 1_000 * S), Ok(claims()));
        assert_eq!(verify(b"k", &t, 1_001 * S), Err(TokenError::Expired));
    }

    #[test]
    fn forged_or_broken_tokens_are_refused() {
        let t = sign(b"k", &claims());
        assert_eq!(verify(b"other", &t, 0), Err(TokenError::BadSignature));
        // Another alert in the payload, the old signature.
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Claims { a: 43, ..claims() }).unwrap());
        let forged = format!("{forged_payload}.{}", t.split_once('.').unwrap().1);
        assert_eq!(verify(b"k", &forged, 0), Err(TokenError::BadSignature));
        assert_eq!(verify(b"k", "nodot", 0), Err(TokenError::Malformed));
        assert_eq!(verify(b"k", "a.!!", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn a_digest_link_names_every_alert_and_an_old_link_reads_as_one() {
        let all = Claims { l: vec![42, 43, 50], ..claims() };
        let t = sign(b"k", &all);
        assert_eq!(verify(b"k", &t, 0).unwrap().alerts(), [42, 43, 50]);
        assert_eq!(claims().alerts(), [42]);
        // A token made before digests had links: no `l` in its payload.
        let old = URL_SAFE_NO_PAD.encode(br#"{"a":42,"m":"x","e":1000,"n":"abc"}"#);
        let old = format!("{old}.{}", URL_SAFE_NO_PAD.encode(mac(b"k", &old)));
        assert_eq!(verify(b"k", &old, 0).unwrap().alerts(), [42]);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
