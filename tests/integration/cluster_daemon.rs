//! Two floodguard daemons on one PostgreSQL 15 state, one broker, the
//! signed HTTP SMS peer: every node hears every reading and judges it; the
//! leader alone notifies; SIGKILL of the leader hands over within the lease
//! and nothing is lost or sent twice (counted at the peer by idempotency
//! key and by recipient and site); the survivor stops on SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::notify::{http_sms, options, teams, FAST_RETRY, QUICK};
use crate::support::floodguard::Floodguard;
use crate::support::mosquitto::Mosquitto;
use crate::support::peer::Peer;
use crate::support::postgres::Postgres;
use crate::support::publish::Publisher;
use crate::support::{http_get, wait_for};

const LEASE_S: u64 = 3;

fn node(broker: &Mosquitto, peer: &Peer, pgs: &Postgres, name: &str) -> Floodguard {
    // A budget wide enough that the second crossing's SMS are not held
    // for the carrier's minute (issue 12's budgets are not under test).
    let sms = http_sms(peer, "budget = [{ max = 100, per = \"1m\" }]\n");
    let mut o = options(broker, format!("{sms}{FAST_RETRY}"), teams(QUICK, ""));
    o.extra = format!(
        "[state]\nbackend = \"postgres\"\nurl = \"{}\"\n\n[cluster]\nnode_id = \"{name}\"\nlease = \"{LEASE_S}s\"\n",
        pgs.url()
    );
    Floodguard::start(o)
}

async fn role(fg: &Floodguard) -> Option<Value> {
    let (code, body) = http_get(&fg.url("/api/v1/cluster")).await?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

async fn leads(fg: &Floodguard) -> bool {
    role(fg).await.is_some_and(|v| v["role"] == "leader")
}

/// Two readings (the plan's sustain) of a depth at a site.
async fn depth(p: &Publisher, site: &str, cm: f64) {
    for _ in 0..2 {
        p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// The SMS the peer took: (idempotency key, phone, text).
fn sms(peer: &Peer) -> Vec<(String, String, String)> {
    peer.accepted("/sms")
        .iter()
        .filter(|r| r.is_send())
        .map(|r| (r.key.clone().unwrap_or_default(), r.to.clone(), r.text.clone()))
        .collect()
}

fn none_twice(taken: &[(String, String, String)]) {
    let keys: BTreeSet<&String> = taken.iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), taken.len(), "an idempotency key twice: {taken:#?}");
    let mut by_person: BTreeMap<(&String, &String), usize> = BTreeMap::new();
    for (_, to, text) in taken {
        *by_person.entry((to, text)).or_default() += 1;
    }
    assert!(by_person.values().all(|n| *n == 1), "the same text to the same phone twice: {by_person:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_one_voice_and_a_sigkilled_leader_replaced_within_the_lease() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let pgs = Postgres::start();
    let mut a = node(&broker, &peer, &pgs, "fg-a");
    wait_for("fg-a to lead", Duration::from_secs(30), || async { leads(&a).await.then_some(()) }).await;
    let mut b = node(&broker, &peer, &pgs, "fg-b");
    a.wait_connected().await;
    b.wait_connected().await;
    let b_role = role(&b).await.unwrap();
    assert_eq!((b_role["role"].as_str(), b_role["leader"].as_str()), (Some("standby"), Some("fg-a")));
    let (_, ready) = b.readyz().await.unwrap();
    assert_eq!(ready["role"], "standby", "{ready}");

    // A Ⅲ crossing heard by both: told once, by the leader.
    let p = Publisher::connect(&broker.url(), "pub-cluster-daemon");
    depth(&p, "CD-JS-01", 21.0).await;
    wait_for("the first SMS", Duration::from_secs(20), || async { (!sms(&peer).is_empty()).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = sms(&peer);
    none_twice(&first);
    let on_b = http_get(&b.url("/api/v1/alerts?active=true")).await.unwrap().1;
    assert!(on_b.contains("CD-JS-01"), "the standby serves the shared alerts: {on_b}");

    // SIGKILL of the leader; the standby leads within the lease (+ 2 s).
    a.kill9();
    let killed = Instant::now();
    wait_for("fg-b to lead", Duration::from_secs(LEASE_S + 10), || async { leads(&b).await.then_some(()) })
        .await;
    let took = killed.elapsed();
    println!("failover: leader SIGKILLed → standby leads in {took:?} (lease {LEASE_S} s)");
    assert!(took <= Duration::from_secs(LEASE_S + 2), "took {took:?}");

    // A new crossing (Ⅲ at CD-JS-02) after the takeover: told by the new leader, once; the
    // first is not told again.
    depth(&p, "CD-JS-02", 27.0).await;
    wait_for("the new leader's SMS", Duration::from_secs(20), || async {
        (sms(&peer).len() > first.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = sms(&peer);
    none_twice(&all);
    assert_eq!(&all[..first.len()], &first[..], "what the old leader sent is not sent again");
    assert_eq!(b.terminate(Duration::from_secs(20)), Some(0), "the survivor stops on SIGTERM");
}

/// The failover bench (docs/performance.md): 10 rounds, each SIGKILLs the
/// leader and at once publishes a crossing the survivor's engine judges as
/// a standby; the time from the kill to the first SMS of it at the peer
/// (the lease lapsing, the takeover, the notification). The killed node
/// comes back as the standby for the next round. Run with
/// `cargo test --release --test integration cluster_daemon::failover_bench -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: prints figures, takes minutes"]
async fn failover_bench() {
    let lease: u64 = std::env::var("FG_BENCH_LEASE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let pgs = Postgres::start();
    let start = |name: &str| {
        let sms = http_sms(&peer, "budget = [{ max = 1000, per = \"1m\" }]\n");
        let mut o = options(&broker, format!("{sms}{FAST_RETRY}"), teams(QUICK, ""));
        o.extra = format!(
            "[state]\nbackend = \"postgres\"\nurl = \"{}\"\n\n[cluster]\nnode_id = \"{name}\"\nlease = \"{lease}s\"\n",
            pgs.url()
        );
        Floodguard::start(o)
    };
    let mut nodes = [start("fg-a"), start("fg-b")];
    for n in &nodes {
        n.wait_connected().await;
    }
    let p = Publisher::connect(&broker.url(), "pub-failover-bench");
    let sites = ["CD-JS-01", "CD-JS-02", "CD-JS-03", "BH-JS-01", "BH-JS-02", "XC-JS-01", "XC-JS-02"];
    let mut took = Vec::new();
    for round in 0..10 {
        let leader = wait_for("a leader", Duration::from_secs(lease * 3), || async {
            for (i, n) in nodes.iter().enumerate() {
                if leads(n).await {
                    return Some(i);
                }
            }
            None
        })
        .await;
        let before = sms(&peer).len();
        let (site, cm) = (sites[round % sites.len()], if round < sites.len() { 30.0 } else { 60.0 });
        let killed = Instant::now();
        nodes[leader].kill9();
        depth(&p, site, cm).await;
        wait_for("the new leader's SMS", Duration::from_secs(lease * 3), || async {
            (sms(&peer).len() > before).then_some(())
        })
        .await;
        let first = peer.accepted("/sms").iter().skip(before).map(|r| r.at).min().unwrap();
        let t = first.duration_since(killed);
        println!("round {round}: leader killed → first SMS of the new leader in {t:?} ({site} {cm} cm)");
        took.push(t);
        nodes[leader].start_again();
        nodes[leader].wait_connected().await;
    }
    took.sort();
    let median = (took[4] + took[5]) / 2;
    println!(
        "failover over {} runs, lease {lease} s: median {median:?}, max {:?} (goal max ≤ lease + 2 s)",
        took.len(),
        took[took.len() - 1]
    );
    none_twice(&sms(&peer));
    for n in &mut nodes {
        assert_eq!(n.terminate(Duration::from_secs(30)), Some(0));
    }
}

/// The node that leads, of `nodes`, once exactly one does.
async fn the_leader(nodes: [&Floodguard; 2], within: Duration) -> &Floodguard {
    wait_for("exactly one leader", within, || async {
        let (a, b) = (leads(nodes[0]).await, leads(nodes[1]).await);
        match (a, b) {
            (true, false) => Some(nodes[0]),
            (false, true) => Some(nodes[1]),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_sends_nothing_and_a_postgres_restart_loses_nothing() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let mut pgs = Postgres::start();
    let mut a = node(&broker, &peer, &pgs, "fg-a");
    wait_for("fg-a to lead", Duration::from_secs(30), || async { leads(&a).await.then_some(()) }).await;
    let mut b = node(&broker, &peer, &pgs, "fg-b");
    a.wait_connected().await;
    b.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-cluster-freeze");

    // SIGSTOP the leader for 3 × lease; a crossing meanwhile is told by the
    // standby that took over; the frozen one, woken, sends nothing.
    a.signal("STOP");
    depth(&p, "CD-JS-01", 21.0).await;
    tokio::time::sleep(Duration::from_secs(3 * LEASE_S)).await;
    assert!(leads(&b).await, "the standby leads while the leader is frozen");
    wait_for("the new leader's SMS", Duration::from_secs(20), || async {
        (!sms(&peer).is_empty()).then_some(())
    })
    .await;
    a.signal("CONT");
    tokio::time::sleep(Duration::from_secs(2 * LEASE_S)).await;
    let woken = role(&a).await.unwrap();
    assert_eq!(
        (woken["role"].as_str(), woken["leader"].as_str()),
        (Some("standby"), Some("fg-b")),
        "{woken}"
    );
    let after_freeze = sms(&peer);
    none_twice(&after_freeze);

    // PostgreSQL killed and started again with a crossing in between: the
    // nodes reconnect, one leads, the crossing is told once.
    pgs.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    depth(&p, "CD-JS-02", 27.0).await;
    tokio::time::sleep(Duration::from_secs(LEASE_S + 1)).await;
    pgs.run();
    wait_for("the crossing told after the restart", Duration::from_secs(40), || async {
        (sms(&peer).len() > after_freeze.len()).then_some(())
    })
    .await;
    let leader = the_leader([&a, &b], Duration::from_secs(20)).await;
    println!("after the PostgreSQL restart {} leads", role(leader).await.unwrap()["node"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = sms(&peer);
    none_twice(&all);
    assert_eq!(&all[..after_freeze.len()], &after_freeze[..], "nothing told again");
    assert_eq!(a.terminate(Duration::from_secs(20)), Some(0), "fg-a stops on SIGTERM");
    assert_eq!(b.terminate(Duration::from_secs(20)), Some(0), "fg-b stops on SIGTERM");
}
