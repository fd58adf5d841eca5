//! The OVS driver's parsers on outputs captured live from OVS 3.1 and
//! iproute2 (tests/fixtures/ovs/, see its README for the exact argv).

use vdp_agent::api::ovs::flows;
use vdp_agent::api::ovs::ofctl::{self, FLOW_COOKIE};
use vdp_agent::api::ovs::veth;
use vdp_agent::api::ovs::vsctl;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ovs")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// eth2, LLDPOeth2, phy-br-ethd, int-br-ethd as `ovs-vsctl get ... ofport` printed them.
fn ofports() -> Vec<u32> {
    vsctl::parse_ofports(&fixture("ofports.txt"), 4)
        .unwrap()
        .into_iter()
        .map(|o| vsctl::valid_ofport(o).unwrap())
        .collect()
}

#[test]
fn list_br() {
    assert_eq!(
        vsctl::parse_list_br(&fixture("list_br.txt")),
        vec!["br-ethd", "br-int"]
    );
}

#[test]
fn snapshot() {
    let s = vsctl::parse_snapshot(&fixture("snapshot.json")).unwrap();
    assert!(s.has_bridge("br-int") && s.has_bridge("br-ethd"));
    assert_eq!(
        s.bridges["br-ethd"],
        vec!["LLDPOeth2", "br-ethd", "eth2", "phy-br-ethd"]
    );
    assert_eq!(
        s.bridges["br-int"],
        vec!["br-int", "int-br-ethd", "tapvm1", "tapvm2"]
    );
    assert_eq!(s.bridge_of("eth2"), Some("br-ethd"));
    assert_eq!(s.bridge_of("nope"), None);
    let of = ofports();
    assert_eq!(s.ifaces["eth2"], Some(of[0] as i64));
    assert_eq!(s.ifaces["LLDPOeth2"], Some(of[1] as i64));
    let (ex, int) = s.interconnect("br-int", "br-ethd").unwrap();
    assert_eq!(ex.name, "phy-br-ethd");
    assert_eq!(ex.peer.as_deref(), Some("int-br-ethd"));
    assert_eq!(ex.ofport, Some(of[2] as i64));
    assert_eq!(int.name, "int-br-ethd");
    assert_eq!(int.ofport, Some(of[3] as i64));
    // Reversed roles find nothing (the peer must be on the other bridge).
    assert!(s.interconnect("br-ethd", "br-ethd").is_none());
}

#[test]
fn iface_lookup_and_tags() {
    assert_eq!(
        vsctl::parse_iface_names(&fixture("find_iface.json")).unwrap(),
        vec!["tapvm1"]
    );
    assert!(vsctl::parse_iface_names(&fixture("find_iface_none.json"))
        .unwrap()
        .is_empty());
    assert_eq!(vsctl::parse_tag(&fixture("get_tag.txt")), Some(5));
    assert_eq!(vsctl::parse_tag(&fixture("get_tag_empty.txt")), None);
}

#[test]
fn dump_flows_external_bridge() {
    let of = ofports();
    let (uplink, lldpo, phy) = (of[0], of[1], of[2]);
    let present = ofctl::parse_dump_flows(&fixture("dump_flows_br_ethd.txt"));
    assert_eq!(present.len(), 7);
    let want = flows::passthrough_flows(lldpo, uplink);
    for f in &want {
        assert!(present.contains(f), "missing {f}");
    }
    assert!(present.contains(&flows::vm_ex_flow(phy, 5, 3003)));
    assert_eq!(
        present
            .iter()
            .filter(|f| flows::is_passthrough_class(f))
            .count(),
        4
    );
    // Neutron's flows are not ours.
    assert_eq!(
        present.iter().filter(|f| f.cookie == FLOW_COOKIE).count(),
        5
    );
    assert!(flows::reconcile(&present, &want, flows::is_passthrough_class).is_empty());
    // With other ofports: 4 strict deletes + 4 adds.
    let other = flows::passthrough_flows(lldpo + 10, uplink + 10);
    let ops = flows::reconcile(&present, &other, flows::is_passthrough_class);
    assert_eq!(ops.len(), 8);

    // The same flows with stats parse to the same values.
    let with_stats = ofctl::parse_dump_flows(&fixture("dump_flows_br_ethd_stats.txt"));
    assert_eq!(with_stats, present);
}

#[test]
fn dump_flows_integration_bridge() {
    let of = ofports();
    let present = ofctl::parse_dump_flows(&fixture("dump_flows_br_int_ours.txt"));
    assert_eq!(present, vec![flows::vm_int_flow(of[3], 5, 3003)]);
    assert_eq!(flows::mod_vlan_target(&present[0]), Some(5));
}

#[test]
fn ip_link_veths() {
    let links = veth::parse_ip_link_json(&fixture("ip_link_veth.json")).unwrap();
    let o = links.iter().find(|l| l.name == "LLDPOeth2").unwrap();
    assert_eq!(o.peer.as_deref(), Some("LLDPLeth2"));
    assert!(o.up);
    let l = links.iter().find(|l| l.name == "LLDPLeth2").unwrap();
    assert_eq!(l.peer.as_deref(), Some("LLDPOeth2"));
    assert!(l.mac.as_deref().is_some_and(|m| m.len() == 17));
    assert!(links
        .iter()
        .any(|l| l.name == "eth2" && l.peer.as_deref() == Some("swp1")));
}

#[test]
fn local_vlan_queries() {
    let argv = vsctl::iface_query_argv("11111111-1111-4111-8111-111111111111");
    assert_eq!(argv[..2], ["ovsdb-client", "transact"]);
    let txn: serde_json::Value = serde_json::from_str(&argv[2]).unwrap();
    assert_eq!(
        txn[1]["where"],
        serde_json::json!([[
            "external_ids",
            "includes",
            [
                "map",
                [["iface-id", "11111111-1111-4111-8111-111111111111"]]
            ]
        ]])
    );
    let id = "445ecacd-9f6f-4d02-83fa-25fa5361a7c5";
    assert_eq!(
        vsctl::parse_iface_query(&fixture("iface_query.json")).unwrap(),
        Some(("tapvm1".to_string(), id.to_string()))
    );
    assert_eq!(
        vsctl::parse_iface_query(&fixture("iface_query_none.json")).unwrap(),
        None
    );
    let argv = vsctl::port_tag_query_argv(id);
    let txn: serde_json::Value = serde_json::from_str(&argv[2]).unwrap();
    assert_eq!(
        txn[1]["where"],
        serde_json::json!([["interfaces", "includes", ["uuid", id]]])
    );
    assert_eq!(
        vsctl::parse_port_tag_query(&fixture("port_tag_query.json")).unwrap(),
        Some(5)
    );
    assert_eq!(
        vsctl::parse_port_tag_query(&fixture("port_tag_query_untagged.json")).unwrap(),
        None
    );
    assert!(vsctl::parse_iface_query("").is_err());
    assert!(vsctl::parse_iface_query(r#"[{"error":"syntax error","details":"x"}]"#).is_err());
}
