//! LinuxHost: the production HostDriver built from ovs, lldpad, uplink, topology.
//! TODO(ovs helper).
