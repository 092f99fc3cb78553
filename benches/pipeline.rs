//! Pure parts of the ingest path on one core: decode a message and encode
//! its readings as line protocol; append records to the spool.
//!
//! `cargo bench --bench pipeline` prints readings/s (criterion's
//! "thrpt", in elements = readings). Recorded in docs/performance.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodguard::catalog::Catalog;
use floodguard::config::{Kind, MqttSection};
use floodguard::ingest::Decoder;
use floodguard::tsdb::line_protocol;

const NOW: i64 = 1_784_613_900_000_000_000;

fn messages(n: usize) -> (Decoder, Vec<(String, Vec<u8>)>) {
    let sites: Vec<(String, Kind, String)> =
        (0..1000).map(|i| (format!("S-{i:04}"), Kind::Waterlogging, format!("street{}", i % 10))).collect();
    let catalog = Catalog::from_sites(sites.iter().map(|(id, k, s)| (id.as_str(), *k, s.as_str())));
    let decoder = Decoder::new(Arc::new(catalog), &MqttSection::default());
    let msgs = (0..n)
        .map(|i| {
            let topic = format!("flood/S-{:04}/telemetry", i % 1000);
            let payload = format!(
                r#"{{"ts":{},"water_depth_cm":{}.5,"battery_v":3.61}}"#,
                NOW / 1_000_000 - 60_000 + i as i64,
                i % 80
            );
            (topic, payload.into_bytes())
        })
        .collect();
    (decoder, msgs)
}

fn decode_and_encode(c: &mut Criterion) {
    let (decoder, msgs) = messages(10_000);
    let mut g = c.benchmark_group("ingest");
    // Two readings per message.
    g.throughput(Throughput::Elements(2 * msgs.len() as u64));
    g.bench_function("decode+line_protocol", |b| {
        let mut out = String::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for (topic, payload) in &msgs {
                let readings = decoder.decode(topic, payload, NOW).unwrap();
                let series = &decoder.catalog().get(&readings[0].site).unwrap().series;
                line_protocol::telemetry(&mut out, series, &readings);
            }
            black_box(out.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0;
            for (topic, payload) in &msgs {
                n += decoder.decode(topic, payload, NOW).unwrap().len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn spool_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut appender, _reader) = floodguard::spool::open(dir.path(), 64 << 20).unwrap();
    let line = b"telemetry,kind=waterlogging,site=S-0001,street=street1 water_depth_cm=12.5,battery_v=3.61 1784613900000000000\n";
    let group: Vec<&[u8]> = vec![line.as_slice(); 512];
    let mut g = c.benchmark_group("spool");
    g.throughput(Throughput::Elements(group.len() as u64));
    g.bench_function("append 512 records in one write", |b| {
        b.iter(|| appender.append(group.iter().copied(), 1).unwrap())
    });
    g.finish();
}

criterion_group!(benches, decode_and_encode, spool_append);
criterion_main!(benches);
