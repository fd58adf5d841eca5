//! Topology discovery: LLDP neighbour reports.
//! TODO(lldptool helper).
