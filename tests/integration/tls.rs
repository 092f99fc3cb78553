//! mqtts:// against a Mosquitto TLS listener with certificates made here:
//! a CA, a server certificate for 127.0.0.1, a client certificate the broker
//! requires, and a username/password on top.

use std::time::Duration;

use crate::support::floodguard::{Floodguard, Options};
use crate::support::mosquitto::{Mosquitto, Tls};
use crate::support::pki::{pki, Pki};
use crate::support::publish::{base_ms, reading};
use crate::support::wait_for;

/// Publishes with mosquitto_pub over TLS (an independent client).
fn publish_tls(port: u16, dir: &std::path::Path, pki: &Pki, topic: &str, payload: &[u8]) {
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca, cert, key) =
        (w("pub-ca.pem", &pki.ca), w("pub.pem", &pki.client_cert), w("pub.key", &pki.client_key));
    let ok = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-u",
            "sensor",
            "-P",
            "sensor-pw",
            "-t",
            topic,
        ])
        .arg("--cafile")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("-m")
        .arg(std::str::from_utf8(payload).unwrap())
        .status()
        .unwrap();
    assert!(ok.success(), "mosquitto_pub over TLS failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_ca_client_certificate_and_password() {
    let pki = pki();
    let broker = Mosquitto::start_with(
        Some(Tls {
            ca_pem: pki.ca.clone(),
            server_cert_pem: pki.server_cert.clone(),
            server_key_pem: pki.server_key.clone(),
            require_client_cert: true,
        }),
        Some(&[("floodguard", "s3cret pw"), ("sensor", "sensor-pw")]),
    );
    let certs = crate::support::tempdir("fg-certs-");
    let w = |name: &str, text: &str| {
        let p = certs.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca, cert, key) =
        (w("ca.pem", &pki.ca), w("client.pem", &pki.client_cert), w("client.key", &pki.client_key));
    let mut opts = Options::new(format!("mqtts://127.0.0.1:{}", broker.port));
    opts.mqtt_extra = format!(
        "username = \"floodguard\"\npassword = {{ file = \"{}\" }}\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        w("mqtt-password", "s3cret pw\n").display(),
        ca.display(),
        cert.display(),
        key.display()
    );
    let fg = Floodguard::start(opts);
    fg.wait_connected().await;

    let base = base_ms();
    for seq in 0..20 {
        let (topic, payload) = reading(seq, base);
        publish_tls(broker.port, certs.path(), &pki, &topic, &payload);
    }
    // Readings, not spool records: area levels and the site catalogue are
    // spooled at start too.
    wait_for("20 readings over TLS", Duration::from_secs(20), || async {
        (fg.metric("floodguard_readings_total").await? >= 40.0).then_some(())
    })
    .await;
    assert_eq!(fg.metric("floodguard_readings_total").await, Some(40.0));
    assert!(!fg.log().contains("s3cret"), "the password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_password_is_refused_and_reported() {
    let pki = pki();
    let other = self::pki();
    let broker = Mosquitto::start_with(
        Some(Tls {
            ca_pem: pki.ca.clone(),
            server_cert_pem: pki.server_cert.clone(),
            server_key_pem: pki.server_key.clone(),
            require_client_cert: false,
        }),
        Some(&[("floodguard", "right")]),
    );
    let certs = crate::support::tempdir("fg-certs-");
    let ca_other = certs.path().join("other-ca.pem");
    std::fs::write(&ca_other, &other.ca).unwrap();
    let mut opts = Options::new(format!("mqtts://127.0.0.1:{}", broker.port));
    opts.mqtt_extra =
        format!("username = \"floodguard\"\npassword = \"right\"\nca_file = \"{}\"\n", ca_other.display());
    let fg = Floodguard::start(opts);
    wait_for("connection errors counted", Duration::from_secs(20), || async {
        (fg.metric("floodguard_mqtt_connection_errors_total").await? >= 2.0).then_some(())
    })
    .await;
    assert_eq!(fg.metric("floodguard_mqtt_connected").await, Some(0.0));
    let (code, body) = fg.readyz().await.unwrap();
    assert_eq!(code, 503);
    assert_eq!(body["broker"], "disconnected");
    let log = fg.log();
    assert!(log.contains("MQTT connection lost or refused"), "{log}");
}
