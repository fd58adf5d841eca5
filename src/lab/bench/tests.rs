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

#[test]
fn cdf_steps() {
    let c = plot::cdf(&[3.0, 1.0, 2.0, f64::NAN]);
    assert_eq!(
        c,
        vec![
            (1.0, 0.0),
            (1.0, 1.0 / 3.0),
            (2.0, 1.0 / 3.0),
            (2.0, 2.0 / 3.0),
            (3.0, 2.0 / 3.0),
            (3.0, 1.0)
        ]
    );
    assert!(plot::cdf(&[]).is_empty());
}

#[test]
fn pictures_from_parts() {
    let dir = crate::lab::netns::TempDir::new("bench-plot").unwrap();
    let d = dir.path();
    let lat: Vec<f64> = (1..=200).map(|i| 10.0 + f64::from(i) * 0.1).collect();
    let burst: Vec<f64> = (1..=800).map(|i| f64::from(i) * 12.0).collect();
    std::fs::write(
        d.join("latency.json"),
        json!({"samples_ms": lat}).to_string(),
    )
    .unwrap();
    std::fs::write(
        d.join("burst.json"),
        json!({"samples_ms": burst}).to_string(),
    )
    .unwrap();
    let series: Vec<(f64, u32)> = (0..100).map(|i| (f64::from(i) * 0.1, i * 10)).collect();
    std::fs::write(
        d.join("resync.json"),
        json!({"expect": 1000, "success_ports": 1000, "all_s": 9.9, "series": series}).to_string(),
    )
    .unwrap();
    assert!(plot::latency_svg(d, &d.join("latency.svg")).unwrap());
    assert!(plot::resync_svg(d, &d.join("resync.svg")).unwrap());
    for f in ["latency.svg", "resync.svg"] {
        let svg = std::fs::read_to_string(d.join(f)).unwrap();
        assert!(svg.starts_with("<svg"), "{f}");
        assert!(svg.contains("<polyline"), "{f}: no line");
        assert!(svg.trim_end().ends_with("</svg>"), "{f}");
    }
    let svg = std::fs::read_to_string(d.join("latency.svg")).unwrap();
    assert!(svg.contains("latency: 200 ports"), "legend names the phase");
    assert!(svg.contains("log scale"));
    // No samples: nothing drawn.
    let empty = crate::lab::netns::TempDir::new("bench-plot-empty").unwrap();
    assert!(!plot::latency_svg(empty.path(), &empty.path().join("l.svg")).unwrap());
    assert!(!plot::resync_svg(empty.path(), &empty.path().join("r.svg")).unwrap());
}
