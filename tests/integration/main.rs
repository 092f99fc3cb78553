//! Integration tests against real services: Mosquitto, InfluxDB 1.6.7,
//! VictoriaMetrics (the v2 write path), and the floodguard binary itself.
//! `scripts/test.sh` installs the services on a fresh machine; each test
//! starts its own instances on free loopback ports.

mod support;

mod alerts;
mod cli;
mod cluster;
mod cluster_alerts;
mod cluster_daemon;
mod cluster_outbox;
mod cluster_prune;
mod cluster_storm;
mod dashboards;
mod demo;
mod deploy;
mod engine;
mod faults;
mod hardening;
mod malformed;
mod modbus;
mod notify;
mod page;
mod push;
mod qc;
mod reach;
mod records;
mod sl651;
mod stages;
mod storage;
mod tls;
