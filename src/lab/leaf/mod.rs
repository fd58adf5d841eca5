//! vdp-lab leaf: IEEE 802.1Qbg bridge simulator.
//! TODO(leaf helper).
