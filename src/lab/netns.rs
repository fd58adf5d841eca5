//! Network-namespace harness: netns, veth, lldpad and OVS instances for tests.
//! TODO(lead).
