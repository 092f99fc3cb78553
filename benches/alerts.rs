//! The alert stage alone: how many level changes a second the alert manager
//! records in `state.db` (a file, WAL, as in the daemon) — the storm
//! burst's 47,000 transitions of 1,000 sites under the sample teams, in the
//! batches the alert stage makes.
//!
//! `cargo bench --bench alerts` prints the figure recorded in
//! docs/performance.md; `ALERTS_PROFILE=1` loops for a profiler. Under
//! `cargo test` it does nothing.

#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::Instant;

use floodguard::alerts::store::Store;
use floodguard::alerts::{AlertManager, LogNotifier, Places};
use floodguard::engine::{Change, Transition};
use support::burst;

const N: u64 = 200_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("alerts: runs under `cargo bench --bench alerts` only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    for f in ["plan.toml", "teams.toml", "materials.toml"] {
        std::fs::copy(support::floodguard::sample_config_dir().join(f), cfg.join(f)).unwrap();
    }
    std::fs::write(cfg.join("sites.toml"), burst::sites_toml()).unwrap();
    std::fs::write(cfg.join("floodguard.toml"), "[channels.sms]\nprovider = \"log\"\n").unwrap();
    let config = floodguard::config::load(&cfg.join("floodguard.toml")).unwrap();
    let lp = cfg.join("storm.lp");
    burst::write_line_protocol(&lp, N, 1_784_563_200_000);
    let rec = floodguard::replay::load(std::io::BufReader::new(std::fs::File::open(&lp).unwrap())).unwrap();
    let transitions = floodguard::replay::run(&config.plan, &rec.readings, 1_000_000_000);
    let sites = transitions.iter().filter(|t| matches!(t.change, Change::Site(_))).count();
    let rounds = if std::env::var_os("ALERTS_PROFILE").is_some() { 5 } else { 1 };
    for _ in 0..rounds {
        let db = cfg.join(format!("state-{}.db", rand::random::<u32>()));
        let store = Store::open(&db).unwrap();
        // As in the daemon: checkpoints on a thread of their own.
        store.background_checkpoints().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let checkpoints = std::thread::spawn({
            let (db, stop) = (db.clone(), stop.clone());
            move || floodguard::alerts::store::checkpoint(&db, &stop)
        });
        let m = AlertManager::new(
            store,
            config.teams.clone(),
            Places::from_config(&config),
            Arc::new(LogNotifier),
            None,
            None,
        )
        .unwrap();
        // The batches the engine hands over (one per 512 messages), applied
        // as the alert stage applies them: up to 250 transitions a commit.
        let mut batches: Vec<&[Transition]> = Vec::new();
        let mut rest = transitions.as_slice();
        while !rest.is_empty() {
            let at = rest.len().min(120);
            batches.push(&rest[..at]);
            rest = &rest[at..];
        }
        let t0 = Instant::now();
        let mut commits = 0;
        let mut group: Vec<(&[Transition], Option<floodguard::engine::Progress>)> = Vec::new();
        let mut in_group = 0;
        for b in &batches {
            group.push((b, None));
            in_group += b.len();
            if in_group >= 250 {
                m.handle_many(&group).unwrap();
                commits += 1;
                group.clear();
                in_group = 0;
            }
        }
        m.handle_many(&group).unwrap();
        let took = t0.elapsed().as_secs_f64();
        let notifications = m.notifications(100_000).unwrap().len();
        stop.cancel();
        checkpoints.join().unwrap();
        println!(
            "alert stage alone: {} transitions ({sites} of sites) in {commits} commits: {took:.2} s = {:.0} transitions/s; {notifications} notifications",
            transitions.len(),
            transitions.len() as f64 / took
        );
    }
}
