use super::*;

#[test]
fn percentiles_nearest_rank() {
    let v: Vec<f64> = (1..=200).map(f64::from).collect();
    assert_eq!(percentile(&v, 50.0), Some(100.0));
    assert_eq!(percentile(&v, 99.0), Some(198.0));
    assert_eq!(percentile(&v, 100.0), Some(200.0));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
}

#[test]
fn bench_ports_are_valid_and_distinct() {
    let a = bench_port(0, 20);
    assert_eq!(a.net, 1);
    assert_eq!(a.segment, 40001);
    assert_eq!(a.port_uuid, "b1000000-0000-4000-8000-000000000000");
    let b = bench_port(999, 50);
    assert_eq!(b.net, 50);
    assert_eq!(b.mac, "fa:16:3e:be:03:e7");
    assert_eq!(b.name, "bp999");
    let macs: HashSet<String> = (0..1000).map(|i| bench_port(i, 50).mac).collect();
    assert_eq!(macs.len(), 1000);
}
