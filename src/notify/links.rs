//! The outbox's ack links: each made with its nonce (stored with the rows
//! that carry it, or at once for a digest's), checked, used once.

use super::{acklink, Outbox};
use crate::reading::TimestampNs;

impl Outbox {
    /// An ack link for `alerts` sent to `member` (one alert, or every alert
    /// of a summary), if links are configured; its nonce is stored with the
    /// rows that carry it, in the same transaction.
    pub(super) fn link_many(&self, alerts: &[i64], member: &str, now: TimestampNs) -> Option<String> {
        let ch = self.ch();
        let ack = &ch.section.ack;
        let ids: Vec<i64> = alerts.iter().copied().filter(|a| *a > 0).collect();
        let first = *ids.first()?;
        if ack.secret.is_empty() || ack.base_url.trim().is_empty() {
            return None;
        }
        let nonce = acklink::nonce();
        let claims = acklink::Claims {
            a: first,
            m: member.to_string(),
            e: now / 1_000_000_000 + ack.ttl.get().as_secs() as i64,
            n: nonce.clone(),
            l: if ids.len() > 1 { ids } else { Vec::new() },
        };
        self.nonces.lock().expect("nonces lock").push((nonce, first, member.to_string()));
        Some(format!(
            "{}/ack/{}",
            ack.base_url.trim_end_matches('/'),
            acklink::sign(ack.secret.expose().as_bytes(), &claims)
        ))
    }

    /// A link that acknowledges every one of `alerts` for `member` (a
    /// digest's), its nonce stored at once; None when links are off.
    pub(super) fn link_all(&self, alerts: &[i64], member: &str, now: TimestampNs) -> Option<String> {
        let ch = self.ch();
        let ack = &ch.section.ack;
        let first = *alerts.iter().find(|a| **a > 0)?;
        if ack.secret.is_empty() {
            return None;
        }
        let nonce = acklink::nonce();
        let claims = acklink::Claims {
            a: first,
            m: member.to_string(),
            e: now / 1_000_000_000 + ack.ttl.get().as_secs() as i64,
            n: nonce.clone(),
            l: alerts.iter().copied().filter(|a| *a > 0).collect(),
        };
        if let Err(e) = self.db().add_nonce(&nonce, first, member, now) {
            tracing::error!(error = %e, "cannot store an ack link");
            return None;
        }
        Some(format!(
            "{}/ack/{}",
            ack.base_url.trim_end_matches('/'),
            acklink::sign(ack.secret.expose().as_bytes(), &claims)
        ))
    }

    /// Checks an ack link (signature, expiry, not used).
    pub fn check_link(&self, token: &str, now: TimestampNs) -> Result<acklink::Claims, acklink::TokenError> {
        let claims = acklink::verify(self.ch().section.ack.secret.expose().as_bytes(), token, now)?;
        match self.db().nonce_unused(&claims.n, claims.a, &claims.m) {
            Ok(true) => Ok(claims),
            _ => Err(acklink::TokenError::Used),
        }
    }

    /// Uses an ack link: valid once.
    pub fn use_link(&self, token: &str, now: TimestampNs) -> Result<acklink::Claims, acklink::TokenError> {
        let claims = acklink::verify(self.ch().section.ack.secret.expose().as_bytes(), token, now)?;
        match self.db().use_nonce(&claims.n, claims.a, &claims.m, now) {
            Ok(true) => Ok(claims),
            _ => Err(acklink::TokenError::Used),
        }
    }
}
