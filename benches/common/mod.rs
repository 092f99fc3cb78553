//! What the end-to-end benchmarks share: generated districts and the peak
//! memory of a process.

#![allow(dead_code)]

/// A sites.toml of waterlogging points: `sites` of (id, street id).
pub fn sites_toml(streets: &[String], sites: impl IntoIterator<Item = (String, String)>) -> String {
    let mut s = String::from("[district]\nid = \"bench\"\nname = \"压测区\"\n\n");
    for st in streets {
        s.push_str(&format!("[[streets]]\nid = \"{st}\"\nname = \"街道{st}\"\n\n"));
    }
    for (i, (id, street)) in sites.into_iter().enumerate() {
        s.push_str(&format!(
            "[[sites]]\nid = \"{id}\"\nname = \"积水点{i}\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
             street = \"{street}\"\nlocation = {{ lat = 30.6, lon = 114.3 }}\n\n"
        ));
    }
    s
}

/// `VmHWM` of a process: the most resident memory it ever had, in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs a benchmark's async body on two worker threads, only under
/// `cargo bench` (under `cargo test --benches` it says so and returns).
pub fn bench_main<F: std::future::Future<Output = ()>>(name: &str, run: impl FnOnce() -> F) {
    if !std::env::args().any(|a| a == "--bench") {
        println!("{name}: runs under `cargo bench --bench {name}` only");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// The sample plan, its one per-site override moved to `site` of the bench,
/// without the cards' materials (a bench district has no depots).
pub fn plan_toml(site: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/plan.toml");
    let text = std::fs::read_to_string(path).unwrap().replace("\"CD-JS-02\"", &format!("\"{site}\""));
    text.lines().filter(|l| !l.starts_with("materials = ")).map(|l| format!("{l}\n")).collect()
}
