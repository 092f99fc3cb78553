//! MQTT connection options from `[mqtt]`: persistent session, manual acks,
//! packet-size limits, TLS with a CA file and optional client certificate.

use std::sync::Arc;

use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::MqttSection;

/// Largest packet we send (subscribe, acks): small.
const MAX_OUTGOING_PACKET: usize = 256 * 1024;
/// Our own QoS1 publishes in flight at most (there are none today).
const OUTGOING_INFLIGHT: u16 = 16;

/// MQTT 3.1.1 options. Errors name the config key at fault.
pub fn options_v311(m: &MqttSection) -> Result<rumqttc::MqttOptions, String> {
    let broker = m.broker().map_err(|e| format!("mqtt.url: {e}"))?;
    let mut o = rumqttc::MqttOptions::new(m.client_id.clone(), broker.host.clone(), broker.port);
    o.set_keep_alive(m.keep_alive.get());
    // Persistent session: the broker keeps our subscriptions and queues QoS1
    // messages while we are away; unacked ones come back after a reconnect.
    o.set_clean_session(false);
    // Ack only once the reading is in the spool.
    o.set_manual_acks(true);
    // Receive oversized messages (to count and drop them) instead of failing
    // the connection and getting them again forever (a poison message).
    o.set_max_packet_size(m.max_packet_size, MAX_OUTGOING_PACKET);
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), password(m));
    }
    if broker.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(m)?))));
    }
    Ok(o)
}

/// MQTT 5 options: the same persistent session (clean start off, a session
/// that never expires), and floodguard's own Receive Maximum.
pub fn options_v5(m: &MqttSection) -> Result<rumqttc::v5::MqttOptions, String> {
    let broker = m.broker().map_err(|e| format!("mqtt.url: {e}"))?;
    let mut o = rumqttc::v5::MqttOptions::new(m.client_id.clone(), broker.host.clone(), broker.port);
    o.set_keep_alive(m.keep_alive.get());
    o.set_clean_start(false);
    // 0xFFFFFFFF: the session does not expire (as a 3.1.1 persistent session).
    o.set_session_expiry_interval(Some(u32::MAX));
    o.set_receive_maximum(Some(m.receive_maximum));
    // floodguard publishes nothing, but rumqttc sizes a table of outgoing
    // publishes by this bound up front: u16::MAX by default, 14 MB of the
    // storm's peak RSS (heaptrack, docs/performance.md).
    o.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
    o.set_manual_acks(true);
    // The broker sends nothing larger (MQTT 5 drops such a message for us
    // instead of failing the connection); smaller oversized payloads are
    // received, counted and dropped by the decoder.
    o.set_max_packet_size(Some(u32::try_from(m.max_packet_size).unwrap_or(u32::MAX)));
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), password(m));
    }
    if broker.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(m)?))));
    }
    Ok(o)
}

fn password(m: &MqttSection) -> String {
    m.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default()
}

/// A rustls client config on the ring provider (the one provider of every
/// TLS crate in floodguard), trusting `ca_file` or the system's roots.
pub fn tls_config(m: &MqttSection) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &m.ca_file {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("mqtt.ca_file: {}: {e}", ca.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("mqtt.ca_file: {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("mqtt.ca_file: {}: no certificate in it", ca.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("mqtt.ca_file: {}: {e}", ca.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    match (&m.client_cert, &m.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("mqtt.client_cert: {}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("mqtt.client_cert: {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("mqtt.client_key: {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("mqtt.client_cert: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_options_keep_the_session_and_ack_by_hand() {
        let o = options_v311(&MqttSection::default()).unwrap();
        assert!(!o.clean_session());
        assert!(o.manual_acks());
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert_eq!(o.client_id(), "floodguard");
        let o = options_v5(&MqttSection::default()).unwrap();
        assert!(!o.clean_start());
        assert!(o.manual_acks());
        assert_eq!(o.session_expiry_interval(), Some(u32::MAX), "a session that never expires");
        assert_eq!(o.receive_maximum(), Some(1000));
        assert_eq!(
            o.get_outgoing_inflight_upper_limit(),
            Some(OUTGOING_INFLIGHT),
            "a small table, not 14 MB"
        );
        assert_eq!(o.client_id(), "floodguard");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let m = MqttSection {
            url: "mqtts://x:8883".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = options_v5(&m).unwrap_err();
        assert!(e.starts_with("mqtt.ca_file: /nonexistent/ca.pem"), "{e}");
    }
}
