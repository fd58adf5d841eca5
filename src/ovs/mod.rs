//! OVS driver: veth pair, bridge ports, pass-through and translation flows,
//! LocalVlan. TODO(ovs helper).
