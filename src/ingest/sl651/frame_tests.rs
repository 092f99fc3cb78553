use proptest::prelude::*;

use super::element::{bcd_number, id, Element, Group, Message, Station, Time, TimeStep, Value};
use super::frame::*;

/// CRC-16/MODBUS written out bit by bit, to check the codec's (crate) CRC.
fn crc_ref(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn t(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Time {
    Time { year, month, day, hour, minute, second }
}

fn message(frame: &Frame) -> &Message {
    frame.message().expect("a message body")
}

fn number(m: &Message, group: usize, id: u16) -> Option<f64> {
    let e = m.groups[group].elements.iter().find(|e| e.id == id).expect("element present");
    match e.value {
        Value::Number(v) => v,
        ref other => panic!("{other:?} is not a number"),
    }
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// A HEX uplink frame around `body` with a right CRC (from the test's CRC).
fn wrap_hex(function: u8, body: &[u8]) -> Vec<u8> {
    let mut f = hex("7E7E 01 0012345678 1234");
    f.push(function);
    f.extend((body.len() as u16).to_be_bytes());
    f.push(0x02);
    f.extend(body);
    f.push(0x03);
    let crc = crc_ref(&f);
    f.extend(crc.to_be_bytes());
    f
}

/// An ASCII uplink frame around `body` with a right CRC.
fn wrap_ascii(function: u8, body: &str) -> Vec<u8> {
    let mut f = vec![0x01];
    f.extend(format!("010012345678ABCD{function:02X}{:04X}", body.len()).bytes());
    f.push(0x02);
    f.extend(body.bytes());
    f.push(0x03);
    let crc = crc_ref(&f);
    f.extend(format!("{crc:04X}").bytes());
    f
}

#[test]
fn crc_is_modbus() {
    assert_eq!(crc16(b"123456789"), 0x4B37);
    assert_eq!(crc16(b"123456789"), crc_ref(b"123456789"));
}

// https://www.toymoban.com/news/detail-686475.html ("SL651-2014全协议解析(HEX编码格式)",
// also https://e-com-net.com/article/1736683930196697088.htm): keep-alive 2F, test
// report 30 and timed report 32 with the centre's replies; the 2F and 32 frames
// are also in yu-xiaoyao/sl651-2014-server,
// netty-server/src/test/java/me/yuxiaoyao/sl651/netty/server/util/CrcUtilTest.java.
#[test]
fn public_keep_alive_frames() {
    let f = parse(&hex("7E7E01001234567812342F0008020003591011155111036BCA")).unwrap();
    assert_eq!((f.header.centre, f.header.station_hex().as_str()), (1, "0012345678"));
    assert_eq!((f.header.password, f.header.function), (0x1234, 0x2F));
    assert_eq!((f.header.direction, f.header.end, f.header.packet), (Direction::Up, End::Etx, None));
    let m = message(&f);
    assert_eq!((m.serial, m.sent), (3, t(2059, 10, 11, 15, 51, 11)));
    assert!(m.station.is_none() && m.groups.is_empty() && m.rest.is_empty());

    // Centre address 00 and a serial that holds a 7E byte.
    let f = parse(&hex("7E7E00987654321012342F0008027E0822101110074703C3AE")).unwrap();
    assert_eq!((f.header.centre, f.header.station_hex().as_str()), (0, "9876543210"));
    let m = message(&f);
    assert_eq!((m.serial, m.sent), (0x7E08, t(2022, 10, 11, 10, 7, 47)));
}

#[test]
fn public_test_report_and_its_confirmation() {
    let up = hex("7E7E010012345678123430002B020003591011154947F1F1001234567848F0F05910111549");
    let up = [up, hex("20190000052619000005392300000127381211150320FA")].concat();
    let f = parse(&up).unwrap();
    assert_eq!(f.header.function, 0x30);
    let m = message(&f);
    assert_eq!((m.serial, m.sent), (3, t(2059, 10, 11, 15, 49, 47)));
    assert_eq!(m.station, Some(Station { address: f.header.station, class: b'H' }));
    assert_eq!(m.groups.len(), 1);
    assert_eq!(m.groups[0].observed, Some(t(2059, 10, 11, 15, 49, 0)));
    // The page: "当前降水量:0.5mm,降水量累计值:0.5mm,瞬时河道水位:0.127m,电源电压:11.15V".
    assert!(close(number(m, 0, id::PJ), 0.5));
    assert!(close(number(m, 0, id::PT), 0.5));
    assert!(close(number(m, 0, id::Z), 0.127));
    assert!(close(number(m, 0, id::VT), 11.15));
    assert_eq!(m.unknown_elements(), 0);

    // The page's reply: downlink, station first, the uplink's send time echoed, ESC.
    let reply = hex("7E7E00123456780112343080080200035910111549471B75D4");
    assert_eq!(confirmation(&f.header, m.serial, m.sent, End::Esc), reply);
    let r = parse(&reply).unwrap();
    assert_eq!((r.header.direction, r.header.centre, r.header.end), (Direction::Down, 1, End::Esc));
    assert_eq!(r.header.station, f.header.station);
    assert_eq!((message(&r).serial, message(&r).sent), (3, m.sent));
}

#[test]
fn public_timed_report_and_its_confirmation() {
    let up = hex("7E7E05001122334403E832002B020034170718110016F1F1001122334448F0F01707181100");
    let up = [up, hex("201900004026190000403923000104903812109903A421")].concat();
    let f = parse(&up).unwrap();
    assert_eq!(
        (f.header.centre, f.header.station_hex().as_str(), f.header.password),
        (5, "0011223344", 1000)
    );
    let m = message(&f);
    assert_eq!((m.serial, m.sent), (0x34, t(2017, 7, 18, 11, 0, 16)));
    assert_eq!(m.groups[0].observed, Some(t(2017, 7, 18, 11, 0, 0)));
    // The page: "当前降水量:4mm,降水量累计值:4mm,瞬时河道水位:10.49m".
    assert!(close(number(m, 0, id::PJ), 4.0));
    assert!(close(number(m, 0, id::PT), 4.0));
    assert!(close(number(m, 0, id::Z), 10.49));
    assert!(close(number(m, 0, id::VT), 10.99));
    let reply = hex("7E7E00112233440503E83280080200341707181100161BE5D4");
    assert_eq!(confirmation(&f.header, m.serial, m.sent, End::Esc), reply);
}

// wainshine/SL651, sl651-toolkit/examples/fujian_messages.txt ("福建省水文监测数据接入规定
// V1.0 示例报文"). Those lines end with a stray 7E after the CRC, kept here.
#[test]
fn public_hourly_report_with_unusual_block_definition() {
    let mut up =
        hex("7E7E100012345678123434003A020003140612020000F1F1001234567848F0F01406120200F55C0AAA0AAA");
    up.extend([0xFF; 20]);
    up.extend(hex("391A0027303812129003ADF7 7E"));
    let (f, used) = next_frame(&up).unwrap().unwrap();
    assert_eq!(used, up.len() - 1, "the stray 7E stays for the next call");
    assert_eq!(next_frame(&up[used..]), Ok(None));
    let m = message(&f);
    assert_eq!((f.header.centre, f.header.function, m.serial), (0x10, 0x34, 3));
    assert_eq!(m.groups[0].observed, Some(t(2014, 6, 12, 2, 0, 0)));
    // F5 with definition 5C instead of C0: still 12 × 2 bytes.
    let drz = &m.groups[0].elements[0];
    let mut expected = vec![Some(27.3), Some(27.3)];
    expected.resize(12, None);
    assert_eq!((drz.id, drz.def, &drz.value), (id::DRZ1, 0x5C, &Value::Block5min(expected)));
    assert!(close(number(m, 0, id::Z), 27.30));
    assert!(close(number(m, 0, id::VT), 12.90));
}

#[test]
fn public_uniform_interval_report() {
    let mut up =
        hex("7E7E011000000006000031004E022F7E221205110019F1F1100000000648F0F022120510050418000005 3923");
    up.extend(hex(&"00028960".repeat(12)));
    up.extend(hex("035B94"));
    let f = parse(&up).unwrap();
    let m = message(&f);
    assert_eq!((f.header.station_hex().as_str(), f.header.password, m.serial), ("1000000006", 0, 0x2F7E));
    assert_eq!(m.sent, t(2022, 12, 5, 11, 0, 19));
    let g = &m.groups[0];
    assert_eq!(g.observed, Some(t(2022, 12, 5, 10, 5, 0)));
    assert_eq!(g.elements[0].value, Value::Step(TimeStep { days: 0, hours: 0, minutes: 5 }));
    assert_eq!((g.elements[1].id, &g.elements[1].value), (id::Z, &Value::Series(vec![Some(28.96); 12])));
}

#[test]
fn public_hourly_report_with_several_groups() {
    let up = hex(concat!(
        "7E7E0110000000060000340068022F7B221202131525F1F1100000000648F0F02212021220F460000000",
        "000000000000000000F0F022120213152619003196F0F02212021220F55C0A2D0A2D0A2D0A2D0A2D0A2D",
        "0A2D0A2D0A2D0A2D0AEC0AECF0F0221202131539230002896020190000003812131603329C",
    ));
    let m = message(&parse(&up).unwrap()).clone();
    let times: Vec<_> = m.groups.iter().map(|g| g.observed.unwrap()).collect();
    let (t1220, t1315) = (t(2022, 12, 2, 12, 20, 0), t(2022, 12, 2, 13, 15, 0));
    assert_eq!(times, [t1220, t1315, t1220, t1315]);
    assert_eq!(m.groups[0].elements[0].value, Value::Block5min(vec![Some(0.0); 12]));
    assert!(close(number(&m, 1, id::PT), 319.6));
    let mut levels = vec![Some(26.05); 10];
    levels.extend([Some(27.96); 2]);
    assert_eq!(m.groups[2].elements[0].value, Value::Block5min(levels));
    assert!(close(number(&m, 3, id::Z), 28.96));
    assert!(close(number(&m, 3, id::PJ), 0.0));
    assert!(close(number(&m, 3, id::VT), 13.16));
}

#[test]
fn public_multi_packet_picture() {
    let up = hex(concat!(
        "7E7E01100000000600003600F8160040012F7F221205161519F1F1100000000648F0F02212051615F3F3",
        "FFD8FFE000104A46494600010101009000900000FFDB004300080606070605080707070909080A0C140D",
        "0C0B0B0C1912130F141D1A1F1E1D1A1C1C20242E2720222C231C1C2837292C30313434341F27393D3832",
        "3C2E333432FFDB0043010909090C0B0C180D0D1832211C21323232323232323232323232323232323232",
        "3232323232323232323232323232323232323232323232323232323232323232FFC00011080015001903",
        "012200021101031101FFC4001F0000010501010101010100000000000000000102030405060708090A0B",
        "FFC400B510000201030317DA10",
    ));
    let f = parse(&up).unwrap();
    assert_eq!((f.header.function, f.header.packet, f.header.end), (0x36, Some((4, 1)), End::Etb));
    let Body::Packet(p) = &f.body else { panic!("an M3 packet") };
    assert_eq!(p.len(), 245);
    let m = parse_message(&f.header, p).unwrap();
    assert_eq!((m.serial, m.sent), (0x2F7F, t(2022, 12, 5, 16, 15, 19)));
    let picture = &m.groups[0].elements[0];
    assert_eq!((picture.id, picture.is_standard()), (id::PICTURE, true));
    assert!(matches!(&picture.value, Value::Raw(jpeg) if jpeg.starts_with(&[0xFF, 0xD8])));
    assert_eq!(build_hex(&f), up);
}

// wainshine/SL651, sl651-toolkit/examples/beijing_messages.txt ("北京水务物联平台 SL651
// 报文测试集"): status word ZT and user-extension identifiers FF nn.
#[test]
fn public_timed_report_with_status_and_extensions() {
    let up = hex(concat!(
        "7E7E010030746200001232002F024465260701060036F1F1003074620048F0F026070106002619003113",
        "45200060048138121287FF090820FF3311020503B042",
    ));
    let f = parse(&up).unwrap();
    let m = message(&f);
    assert_eq!(
        (f.header.station_hex().as_str(), f.header.password, m.serial),
        ("0030746200", 0x0012, 0x4465)
    );
    assert_eq!(m.groups[0].observed, Some(t(2026, 7, 1, 6, 0, 0)));
    assert!(close(number(m, 0, id::PT), 311.3));
    assert!(close(number(m, 0, id::VT), 12.87));
    let e = &m.groups[0].elements;
    assert_eq!((e[1].id, &e[1].value), (id::ZT, &Value::Status(0x0060_0481)));
    assert_eq!((e[3].id, &e[3].value), (0xFF09, &Value::Raw(vec![0x20])));
    assert_eq!((e[4].id, &e[4].value), (0xFF33, &Value::Raw(vec![0x02, 0x05])));
    assert_eq!(m.unknown_elements(), 2);
    assert_eq!(bcd_number(&[0x02, 0x05], e[4].decimals()), Ok(Some(20.5)));
}

#[test]
fn public_hourly_report_with_rain_and_level_blocks() {
    let up = hex(concat!(
        "7E7E100030700300123434004E02BE3F260701060000F1F1003070030048F0F02607010600F460000000",
        "000000000000000000F5C001AC01AC01AC01AC01AC01AC01AC01AC01AC01AC01AC01AC26190000003923",
        "000042803812137003F8F7",
    ));
    let m = message(&parse(&up).unwrap()).clone();
    let e = &m.groups[0].elements;
    assert_eq!((e[0].id, &e[0].value), (id::DRP, &Value::Block5min(vec![Some(0.0); 12])));
    assert_eq!((e[1].id, &e[1].value), (id::DRZ1, &Value::Block5min(vec![Some(4.28); 12])));
    assert!(close(number(&m, 0, id::Z), 4.28));
    assert!(close(number(&m, 0, id::VT), 13.70));
}

#[test]
fn confirmation_byte_exact_with_eot() {
    let up = parse(&hex("7E7E01001234567812342F0008020003591011155111036BCA")).unwrap();
    let sent = t(2024, 6, 1, 8, 30, 5);
    let mut expected = hex("7E7E 0012345678 01 1234 2F 8008 02 0003 240601083005 04");
    let crc = crc_ref(&expected);
    expected.extend(crc.to_be_bytes());
    assert_eq!(confirmation(&up.header, 3, sent, End::Eot), expected);
}

#[test]
fn nak_asks_a_packet_again() {
    let mut up = parse(&hex("7E7E01001234567812342F0008020003591011155111036BCA")).unwrap().header;
    up.packet = Some((4, 1));
    let f = parse(&nak(&up, 3, t(2024, 6, 1, 8, 30, 5), 2)).unwrap();
    assert_eq!(
        (f.header.direction, f.header.end, f.header.packet),
        (Direction::Down, End::Nak, Some((4, 2)))
    );
    assert_eq!(f.body, Body::Packet(hex("0003 240601083005")));
}

#[test]
fn negative_missing_and_bad_bcd_values() {
    let body =
        hex("0001 240601083005 F1F1 0012345678 48 F0F0 2406010830 3923 FF000123 3923 FFFFFFFF 3812 1207");
    let m = message(&parse(&wrap_hex(0x32, &body)).unwrap()).clone();
    let values: Vec<_> = m.groups[0].elements.iter().map(|e| e.value.clone()).collect();
    assert_eq!(values[..2], [Value::Number(Some(-0.123)), Value::Number(None)]);
    // A frame with a right CRC but a bad value is dropped whole.
    let bad = wrap_hex(0x32, &hex("0001 240601083005 F0F0 2406010830 3923 0000A123"));
    assert_eq!(next_frame(&bad), Err((FrameError::BadBcd("value"), bad.len())));
    let cut = wrap_hex(0x32, &hex("0001 240601083005 F0F0 2406010830 3923 0000"));
    assert_eq!(next_frame(&cut).unwrap_err().0.cause(), "truncated");
}

#[test]
fn garbage_and_framing_errors() {
    let frame = hex("7E7E01001234567812342F0008020003591011155111036BCA");
    let stream = [hex("0011 7E 01 22"), frame.clone()].concat();
    assert_eq!(next_frame(&stream), Err((FrameError::Garbage { skipped: 5 }, 5)));
    assert_eq!(next_frame(&stream[5..]).unwrap().unwrap().1, frame.len());

    let mut bad = frame.clone();
    bad[20] ^= 1;
    let (e, skip) = next_frame(&bad).unwrap_err();
    assert_eq!((e.cause(), skip), ("bad_crc", bad.len()));
    let mut bad = frame.clone();
    bad[11] = 0x40;
    assert_eq!(next_frame(&bad).unwrap_err().0, FrameError::BadDirection(4));
    let mut bad = frame.clone();
    bad[13] = 0x09;
    assert_eq!(next_frame(&bad).unwrap_err().0.cause(), "bad_control");
    // A corrupt frame followed by a good one: resynchronise at the next 7E 7E.
    let two = [&bad[..], &frame[..]].concat();
    assert_eq!(next_frame(&two).unwrap_err().1, bad.len());
    for cause in FrameError::CAUSES {
        assert!(!cause.is_empty());
    }
}

#[test]
fn ascii_report_and_confirmation() {
    let body = "0003 591011154947 ST 0012345678 H TT 5910111549 PJ 0.5 PT 12.5 Z -0.127 VT 11.15 DRP \
                0A05FF0A000F050A0A0A0A0A ZT 00000481 XQ 7";
    let f = parse(&wrap_ascii(0x32, body)).unwrap();
    assert_eq!((f.header.encoding, f.header.centre, f.header.password), (Encoding::Ascii, 1, 0xABCD));
    assert_eq!((f.header.station_hex().as_str(), f.header.function), ("0012345678", 0x32));
    let m = message(&f);
    assert_eq!((m.serial, m.sent), (3, t(2059, 10, 11, 15, 49, 47)));
    assert_eq!(m.station, Some(Station { address: f.header.station, class: b'H' }));
    assert_eq!(m.groups[0].observed, Some(t(2059, 10, 11, 15, 49, 0)));
    assert!(close(number(m, 0, id::PT), 12.5));
    assert!(close(number(m, 0, id::Z), -0.127));
    let drp = &m.groups[0].elements[4].value;
    let Value::Block5min(v) = drp else { panic!("{drp:?}") };
    assert_eq!(v[..3], [Some(1.0), Some(0.5), None]);
    assert_eq!(m.groups[0].elements[5].value, Value::Status(0x481));
    assert_eq!((m.dropped, m.unknown_elements()), (1, 1));

    let reply = confirmation(&f.header, 3, m.sent, End::Eot);
    let r = parse(&reply).unwrap();
    assert_eq!(
        (r.header.encoding, r.header.direction, r.header.end),
        (Encoding::Ascii, Direction::Down, End::Eot)
    );
    assert_eq!((r.header.station, r.header.centre), (f.header.station, 1));
    assert_eq!((message(&r).serial, message(&r).sent), (3, m.sent));
    assert_eq!(&reply[1..13], b"001234567801");
    assert_eq!(&reply[reply.len() - 4..], format!("{:04X}", crc_ref(&reply[..reply.len() - 4])).as_bytes());
}

#[test]
fn ascii_uniform_interval_series() {
    let f =
        parse(&wrap_ascii(0x31, "0007 140121170015 ST 0044556677 H TT 1401211605 DRN05 Z 2.001 2.118 FF"))
            .unwrap();
    let e = &message(&f).groups[0].elements;
    assert_eq!(e[0].value, Value::Step(TimeStep { days: 0, hours: 0, minutes: 5 }));
    assert_eq!(e[1].value, Value::Series(vec![Some(2.001), Some(2.118), None]));
}

// ---- properties ----

fn time(seconds: bool) -> impl Strategy<Value = Time> {
    (2000u16..2100, 0u8..100, 0u8..100, 0u8..100, 0u8..100, 0u8..100).prop_map(move |(y, mo, d, h, mi, s)| {
        Time { year: y, month: mo, day: d, hour: h, minute: mi, second: if seconds { s } else { 0 } }
    })
}

/// A BCD number of `len` bytes with `dec` decimals, exactly as parsing makes it.
fn bcd_value(len: usize, dec: u8) -> impl Strategy<Value = Option<f64>> {
    let digits = |n: usize| 10u64.pow(2 * n as u32);
    let scale = 10f64.powi(dec.into());
    prop_oneof![
        1 => Just(None),
        6 => (0..digits(len)).prop_map(move |m| Some(m as f64 / scale)),
        2 => (1..digits(len - 1).max(2)).prop_map(move |m| Some(if len > 1 { -(m as f64 / scale) } else { 0.0 })),
    ]
}

fn element() -> impl Strategy<Value = Element> {
    let numeric = (0x01u16..=0x75).prop_filter("special", |i| ![id::STEP, id::ZT].contains(i));
    let number = (numeric, 1usize..=7, 0u8..=7).prop_flat_map(|(id, len, dec)| {
        bcd_value(len, dec).prop_map(move |v| Element {
            id,
            def: (len as u8) << 3 | dec,
            value: Value::Number(v),
        })
    });
    let step = (0u8..100, 0u8..100, 0u8..100).prop_map(|(days, hours, minutes)| Element {
        id: id::STEP,
        def: 0x18,
        value: Value::Step(TimeStep { days, hours, minutes }),
    });
    let status = any::<u32>().prop_map(|s| Element { id: id::ZT, def: 0x20, value: Value::Status(s) });
    let drp = prop::collection::vec(prop::option::of(0u8..=254), 12).prop_map(|v| Element {
        id: id::DRP,
        def: 0x60,
        value: Value::Block5min(v.into_iter().map(|x| x.map(|x| f64::from(x) / 10.0)).collect()),
    });
    let drz =
        (0xF5u16..=0xFC, prop::collection::vec(prop::option::of(0u16..=65534), 12)).prop_map(|(id, v)| {
            Element {
                id,
                def: 0xC0,
                value: Value::Block5min(v.into_iter().map(|x| x.map(|x| f64::from(x) / 100.0)).collect()),
            }
        });
    let unknown_id = prop_oneof![0x76u16..=0xEF, (0u16..=0xFF).prop_map(|x| 0xFF00 | x)];
    let raw = (unknown_id, 0usize..8, 0u8..8).prop_flat_map(|(id, len, dec)| {
        prop::collection::vec(any::<u8>(), len).prop_map(move |r| Element {
            id,
            def: (len as u8) << 3 | dec,
            value: Value::Raw(r),
        })
    });
    prop_oneof![6 => number, 1 => step, 1 => status, 1 => drp, 1 => drz, 1 => raw]
}

/// Groups of a report: the first may lack an observation time (then it has
/// elements), the others start with `F0 F0`.
fn groups(uniform: bool) -> impl Strategy<Value = Vec<Group>> {
    let elements = if uniform {
        let series = (0x01u16..=0x75, 1usize..=5, 0u8..=3).prop_flat_map(|(id, len, dec)| {
            prop::collection::vec(bcd_value(len, dec), 1..8).prop_map(move |v| Element {
                id,
                def: (len as u8) << 3 | dec,
                value: Value::Series(v),
            })
        });
        let step = Element {
            id: id::STEP,
            def: 0x18,
            value: Value::Step(TimeStep { days: 0, hours: 0, minutes: 5 }),
        };
        series
            .prop_filter("not special", |e| ![id::STEP, id::ZT].contains(&e.id))
            .prop_map(move |s| vec![step.clone(), s])
            .boxed()
    } else {
        prop::collection::vec(element(), 0..10).boxed()
    };
    prop::collection::vec((prop::option::of(time(false)), elements), 0..6).prop_map(|gs| {
        gs.into_iter()
            .enumerate()
            .filter_map(|(i, (observed, elements))| match observed {
                None if i > 0 || elements.is_empty() => None,
                observed => Some(Group { observed, elements }),
            })
            .collect()
    })
}

fn end() -> impl Strategy<Value = End> {
    prop::sample::select(vec![End::Etx, End::Etb, End::Eot, End::Esc, End::Enq, End::Ack, End::Nak])
}

fn frame() -> impl Strategy<Value = Frame> {
    let report = (0x30u8..=0x3A, any::<u16>(), time(true), prop::option::of((any::<[u8; 5]>(), any::<u8>())))
        .prop_flat_map(|(function, serial, sent, station)| {
            groups(function == 0x31).prop_map(move |groups| {
                let station = station.map(|(address, class)| Station { address, class });
                (
                    function,
                    Direction::Up,
                    Body::Message(Message { serial, sent, station, groups, rest: vec![], dropped: 0 }),
                )
            })
        });
    let plain =
        (any::<u8>(), any::<bool>(), any::<u16>(), time(true), prop::collection::vec(any::<u8>(), 0..40))
            .prop_filter("reports carry elements", |(f, down, ..)| *down || !(0x30..=0x3A).contains(f))
            .prop_map(|(function, down, serial, sent, rest)| {
                let direction = if down { Direction::Down } else { Direction::Up };
                (
                    function,
                    direction,
                    Body::Message(Message { serial, sent, station: None, groups: vec![], rest, dropped: 0 }),
                )
            });
    let packet = (any::<u8>(), any::<bool>(), 1u16..4096, prop::collection::vec(any::<u8>(), 0..200))
        .prop_flat_map(|(function, down, total, bytes)| {
            (1..=total).prop_map(move |number| {
                let direction = if down { Direction::Down } else { Direction::Up };
                (function, direction, Body::Packet(bytes.clone()), Some((total, number)))
            })
        });
    let body = prop_oneof![
        4 => report.prop_map(|(f, d, b)| (f, d, b, None)),
        1 => plain.prop_map(|(f, d, b)| (f, d, b, None)),
        1 => packet,
    ];
    (any::<u8>(), any::<[u8; 5]>(), any::<u16>(), end(), body).prop_map(
        |(centre, station, password, end, (function, direction, body, packet))| Frame {
            header: Header {
                encoding: Encoding::Hex,
                centre,
                station,
                password,
                function,
                direction,
                packet,
                end,
            },
            body,
        },
    )
}

/// Everything `next_frame` makes of a stream, with the bytes it consumed.
fn drain(mut buf: &[u8]) -> (Vec<Frame>, Vec<&'static str>) {
    let (mut frames, mut causes) = (vec![], vec![]);
    loop {
        match next_frame(buf) {
            Ok(None) => return (frames, causes),
            Ok(Some((f, used))) => {
                assert!(used > 0 && used <= buf.len());
                frames.push(f);
                buf = &buf[used..];
            }
            Err((e, skip)) => {
                assert!(skip > 0 && skip <= buf.len(), "{e}: skip {skip} of {}", buf.len());
                causes.push(e.cause());
                buf = &buf[skip..];
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn build_then_parse_round_trips(f in frame()) {
        let bytes = build_hex(&f);
        prop_assert_eq!(crc_ref(&bytes[..bytes.len() - 2]).to_be_bytes(), [bytes[bytes.len() - 2], bytes[bytes.len() - 1]]);
        prop_assert_eq!(parse(&bytes), Ok(f));
    }

    #[test]
    fn every_single_byte_corruption_is_caught(f in frame(), delta in 1u8..=255) {
        let bytes = build_hex(&f);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= delta;
            match parse(&bad) {
                Err(_) => {}
                Ok(g) => prop_assert_eq!(g, f.clone(), "corrupting byte {} gave another frame", i),
            }
        }
    }

    #[test]
    fn split_frames_wait_until_complete(f in frame(), g in frame()) {
        let (a, b) = (build_hex(&f), build_hex(&g));
        for k in 0..a.len() {
            prop_assert_eq!(next_frame(&a[..k]), Ok(None), "prefix of {} bytes", k);
        }
        let stream = [&a[..], &b[..]].concat();
        prop_assert_eq!(next_frame(&stream), Ok(Some((f.clone(), a.len()))));
        prop_assert_eq!(drain(&stream), (vec![f, g], vec![]));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        drain(&bytes);
        let mut marked = vec![0x7E, 0x7E];
        marked.extend(&bytes);
        drain(&marked);
    }

    #[test]
    fn arbitrary_bodies_with_right_crc_never_panic(
        function in prop::sample::select(vec![0x2Fu8, 0x30, 0x31, 0x32, 0x34, 0x35, 0x36, 0x40]),
        head in prop::collection::vec(prop::sample::select(vec![0xF0u8, 0xF1, 0xF2, 0xF4, 0xF5, 0xFF, 0x04, 0x39, 0x45, 0x23, 0x00]), 0..30),
        tail in prop::collection::vec(any::<u8>(), 0..200),
        text in "[ -~]{0,120}",
    ) {
        let body = [&hex("0001 240601083005 F1F1 0012345678 48 F0F0 2406010830")[..], &head, &tail].concat();
        drain(&wrap_hex(function, &body));
        drain(&wrap_ascii(function, &text));
        drain(&wrap_ascii(function, &format!("0001 240601083005 ST 0012345678 H TT 2406010830 {text}")));
    }
}
