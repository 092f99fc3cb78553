use std::io::Write as _;

use tokio_util::sync::CancellationToken;

use super::*;

const T0: i64 = 1_784_613_900_000;

fn recs(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("telemetry,site=S x={i} {i}\n")).collect()
}

fn append_all(a: &mut Appender, lines: &[String]) {
    for chunk in lines.chunks(7) {
        a.append(chunk.iter().map(|s| s.as_bytes()), T0).unwrap();
    }
}

async fn drain(r: &mut Reader, max: usize) -> (Vec<String>, Vec<Batch>) {
    let mut lines = Vec::new();
    let mut batches = Vec::new();
    loop {
        let b = r.try_batch(max).unwrap();
        if b.records == 0 {
            return (lines, batches);
        }
        let text = String::from_utf8(b.body.clone()).unwrap();
        lines.extend(text.lines().map(|l| format!("{l}\n")));
        batches.push(b);
    }
}

fn segments(dir: &Path) -> Vec<u64> {
    list_segments(dir).unwrap()
}

#[tokio::test]
async fn records_come_back_in_order_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut r) = open(dir.path(), 1 << 20).unwrap();
    let lines = recs(0..100);
    append_all(&mut a, &lines);
    assert_eq!(a.stats().pending_records.load(Ordering::Relaxed), 100);
    let (got, batches) = drain(&mut r, 30).await;
    assert_eq!(got, lines);
    assert_eq!(batches.iter().map(|b| b.records).collect::<Vec<_>>(), [30, 30, 30, 10]);
    assert_eq!(batches[0].first_appended_ms, T0);
}

#[tokio::test]
async fn uncommitted_records_are_read_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut a, mut r) = open(dir.path(), 1 << 20).unwrap();
        append_all(&mut a, &recs(0..50));
        let (_, batches) = drain(&mut r, 20).await;
        r.commit(&batches[0]).unwrap(); // 20 stored; 30 read but not stored
    }
    let (_a, mut r) = open(dir.path(), 1 << 20).unwrap();
    assert_eq!(r.stats().pending_records.load(Ordering::Relaxed), 30);
    let (got, _) = drain(&mut r, 100).await;
    assert_eq!(got, recs(20..50));
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_counted_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut a, _r) = open(dir.path(), 1 << 20).unwrap();
        append_all(&mut a, &recs(0..10));
        // A crash in the middle of the next write: half a frame on disk.
        let mut frame = Vec::new();
        record::encode(&mut frame, T0, b"telemetry,site=S x=10 10\n");
        let seg = segments(dir.path())[0];
        let mut f = OpenOptions::new().append(true).open(segment_path(dir.path(), seg)).unwrap();
        f.write_all(&frame[..frame.len() / 2]).unwrap();
    }
    let (mut a, mut r) = open(dir.path(), 1 << 20).unwrap();
    assert_eq!(r.stats().corrupt_frames.load(Ordering::Relaxed), 1);
    assert_eq!(r.stats().pending_records.load(Ordering::Relaxed), 10);
    append_all(&mut a, &recs(11..15));
    let (got, _) = drain(&mut r, 100).await;
    let mut want = recs(0..10);
    want.extend(recs(11..15));
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_damaged_record_in_the_middle_is_skipped_not_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut a, _r) = open(dir.path(), 1 << 20).unwrap();
        for line in recs(0..10) {
            a.append([line.as_bytes()], T0).unwrap();
        }
    }
    // Flip a byte inside the payload of record 4.
    let seg = segments(dir.path())[0];
    let path = segment_path(dir.path(), seg);
    let mut data = fs::read(&path).unwrap();
    let frame_len = record::HEADER + recs(0..1)[0].len();
    data[4 * frame_len + record::HEADER + 3] ^= 0xFF;
    fs::write(&path, data).unwrap();

    let (_a, mut r) = open(dir.path(), 1 << 20).unwrap();
    let (got, _) = drain(&mut r, 100).await;
    let want: Vec<String> =
        recs(0..10).into_iter().enumerate().filter(|(i, _)| *i != 4).map(|(_, s)| s).collect();
    assert_eq!(got, want);
    assert!(r.stats().corrupt_frames.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn segments_roll_and_are_deleted_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut r) = open(dir.path(), 1024).unwrap();
    let lines = recs(0..200);
    append_all(&mut a, &lines);
    assert!(segments(dir.path()).len() > 5, "{:?}", segments(dir.path()));
    let (got, batches) = drain(&mut r, 1000).await;
    assert_eq!(got, lines);
    r.commit(batches.last().unwrap()).unwrap();
    assert_eq!(segments(dir.path()).len(), 1, "only the active segment remains");
    let stats = r.stats();
    assert_eq!(stats.pending_records.load(Ordering::Relaxed), 0);
    assert_eq!(stats.pending_bytes.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_partial_batch_waits_for_the_linger_time_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut r) = open(dir.path(), 1 << 20).unwrap();
    let stop = CancellationToken::new();
    append_all(&mut a, &recs(0..3));
    let started = std::time::Instant::now();
    let b = r.next_batch(100, Duration::from_millis(150), &stop).await.unwrap();
    assert_eq!(b.records, 3);
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A batch that fills up returns at once.
    append_all(&mut a, &recs(3..103));
    let b = r.next_batch(100, Duration::from_secs(3600), &stop).await.unwrap();
    assert_eq!(b.records, 100);
}

#[tokio::test]
async fn the_reader_wakes_when_records_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut r) = open(dir.path(), 1 << 20).unwrap();
    let stop = CancellationToken::new();
    let waiter =
        tokio::spawn(async move { r.next_batch(1, Duration::from_secs(60), &stop).await.unwrap().records });
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.append([b"m x=1 1\n".as_slice()], T0).unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn stop_returns_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, mut r) = open(dir.path(), 1 << 20).unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    let b = r.next_batch(10, Duration::from_secs(60), &stop).await.unwrap();
    assert_eq!(b.records, 0);
}

#[test]
fn sync_clears_dirty_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, _r) = open(dir.path(), 1 << 20).unwrap();
    a.sync().unwrap();
    assert_eq!(a.stats().fsyncs.load(Ordering::Relaxed), 0, "nothing to sync");
    a.append([b"m x=1 1\n".as_slice()], T0).unwrap();
    a.syncer().sync().unwrap();
    a.sync().unwrap();
    assert_eq!(a.stats().fsyncs.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_tail_reads_between_positions_across_segments_and_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut r) = open(dir.path(), 1024).unwrap();
    let start = a.position();
    let mut ends = Vec::new();
    for chunk in recs(0..120).chunks(7) {
        let ap = a.append(chunk.iter().map(|s| s.as_bytes()), T0).unwrap();
        assert!(ap.start >= ap.prev_end);
        ends.push(ap);
    }
    assert!(segments(dir.path()).len() > 3, "it rolled");
    for w in ends.windows(2) {
        assert_eq!(w[1].prev_end, w[0].end, "each append starts where the last ended");
    }
    let mut tail = a.tail(start);
    // Up to the start of the 5th append: its first 4 appends, 28 records.
    let b = tail.read_until(ends[4].start, 1000).unwrap();
    assert_eq!(b.records, 28);
    assert_eq!(String::from_utf8(b.body).unwrap(), recs(0..28).concat());
    assert_eq!(tail.position(), ends[4].start);
    // The rest, in bounded pieces.
    let mut rest = String::new();
    loop {
        let b = tail.read_until(Position::MAX, 10).unwrap();
        if b.records == 0 {
            break;
        }
        rest.push_str(std::str::from_utf8(&b.body).unwrap());
    }
    assert_eq!(rest, recs(28..120).concat());
    assert_eq!(tail.position(), tail.head());
    // The writer's figures are its own.
    assert_eq!(a.stats().oldest_pending_ms.load(Ordering::Relaxed), 0);
    let (got, _) = drain(&mut r, 1000).await;
    assert_eq!(got.len(), 120);
}

#[tokio::test]
async fn segments_the_engine_still_needs_are_kept_after_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut r) = open(dir.path(), 1024).unwrap();
    let start = a.position();
    let engine = a.retention("engine", start);
    append_all(&mut a, &recs(0..200));
    let before = segments(dir.path());
    let (_, batches) = drain(&mut r, 1000).await;
    r.commit(batches.last().unwrap()).unwrap();
    assert_eq!(segments(dir.path()), before, "the engine has judged nothing yet: all kept");
    // The engine is halfway: what lies wholly before its place goes at the next commit.
    let mut tail = a.tail(start);
    let half = tail.read_until(Position::MAX, 100).unwrap();
    engine.set(half.end);
    append_all(&mut a, &recs(200..210));
    let (_, batches) = drain(&mut r, 1000).await;
    r.commit(batches.last().unwrap()).unwrap();
    let after = segments(dir.path());
    assert_eq!(after.first().copied(), Some(half.end.segment), "{after:?}");
    // A tail from the engine's place still reads everything after it.
    let mut tail = a.tail(half.end);
    let b = tail.read_until(Position::MAX, 1000).unwrap();
    assert_eq!(String::from_utf8(b.body).unwrap(), recs(100..210).concat());
}

#[tokio::test]
async fn a_full_spool_refuses_appends_until_the_writer_frees_room() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 64 * 1024;
    let (mut a, mut r) = open(dir.path(), segment).unwrap();
    let disk = Arc::new(crate::disk::Disk::default());
    a.limit(disk.clone(), Some(4 * segment));
    let line = format!("telemetry,site=S x=1 {}\n", "9".repeat(1000));
    let mut written = 0;
    let err = loop {
        match a.append([line.as_bytes()], T0) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "the limit never came");
    };
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert!(err.to_string().contains("spool.max_bytes"), "{err}");
    let on_disk: u64 =
        segments(dir.path()).iter().map(|s| fs::metadata(segment_path(dir.path(), *s)).unwrap().len()).sum();
    assert!(on_disk <= 4 * segment, "{on_disk} bytes on disk");
    assert_eq!(a.stats().disk_bytes.load(Ordering::Relaxed) as u64, on_disk);
    assert!(disk.problems()[0].starts_with("disk full: spool in"), "{:?}", disk.problems());
    // Refused again while nothing is freed; nothing was half written.
    assert!(a.append([line.as_bytes()], T0).is_err());
    let (lines, batches) = drain(&mut r, 100_000).await;
    assert_eq!(lines.len(), written, "every record appended before the limit is there, none after");
    // The writer commits: whole segments go, there is room again.
    r.commit(batches.last().unwrap()).unwrap();
    a.append([line.as_bytes()], T0).unwrap();
    assert!(!disk.is_full(), "the disk is cleared by the next write");
}
