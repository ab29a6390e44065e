//! Exchange selection: longest-prefix route lookup (lab table and a table of
//! 10 000 prefixes), with and without a content-type restriction, and the
//! MSISDN → converged URI map (explicit entry, template).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::ids::LegacySystemId;
use iwf::interwork::address::Msisdn;
use iwf::route::select::{MsisdnMap, RouteSpec, RoutingTable};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let lab = RoutingTable::build(&[
        RouteSpec::new("+4470001", LegacySystemId(1)),
        RouteSpec::new("+4470002", LegacySystemId(2)),
        RouteSpec::new("+4470003", LegacySystemId(3)).content_type("text/plain"),
    ])
    .expect("lab routes");
    // 10 000 prefixes of 3..9 digits, as a national numbering plan might have.
    let prefixes: Vec<String> = (0..10_000u64)
        .map(|i| {
            let v = i.wrapping_mul(2_654_435_761) % 1_000_000_000;
            let len = 3 + (i % 7) as usize;
            format!("+{v:09}")[..=len].to_owned()
        })
        .collect();
    let mut specs: Vec<RouteSpec<'_>> = Vec::new();
    for (i, p) in prefixes.iter().enumerate() {
        if !specs.iter().rev().take(64).any(|s| s.prefix == p.as_str()) {
            specs.push(RouteSpec::new(p, LegacySystemId((i % 50) as u16)));
        }
    }
    specs.sort_by(|a, b| a.prefix.cmp(b.prefix));
    specs.dedup_by(|a, b| a.prefix == b.prefix);
    let big = RoutingTable::build(&specs).expect("big table");
    let a = Msisdn::parse("+447000112345").expect("number");
    let c3 = Msisdn::parse("+447000312345").expect("number");
    let far = Msisdn::parse(&format!("{}12345", &prefixes[4321][..])).expect("number");

    let mut g = c.benchmark_group("selection");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lab_select", |b| b.iter(|| lab.select(black_box(&a), black_box(Some("message/cpim")))));
    g.bench_function("lab_select_content_type", |b| {
        b.iter(|| lab.select(black_box(&c3), black_box(Some("text/plain"))))
    });
    g.bench_function("10k_prefixes_select", |b| b.iter(|| big.select(black_box(&far), None)));

    let entries: Vec<(String, String)> =
        (0..10_000u64).map(|i| (format!("+4477009{i:05}"), format!("sip:user{i}@ims.lab"))).collect();
    let refs: Vec<(&str, &str)> = entries.iter().map(|(m, u)| (m.as_str(), u.as_str())).collect();
    let map = MsisdnMap::build(&refs, Some("sip:+{msisdn}@ims.lab;user=phone")).expect("map");
    let known = Msisdn::parse("+447700904321").expect("number");
    let templated = Msisdn::parse("+447000112345").expect("number");
    let mut buf = [0u8; 128];
    g.bench_function("msisdn_entry_10k", |b| b.iter(|| map.write_uri(black_box(&known), &mut buf).map(black_box)));
    g.bench_function("msisdn_template", |b| b.iter(|| map.write_uri(black_box(&templated), &mut buf).map(black_box)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
