//! Lab tools behind the `vdp-lab` binary: the reference controller
//! (`server`), the 802.1Qbg leaf simulator (`leaf`) and the network-namespace
//! harness used by tests and scripts (`netns`). Not used by the daemon.

pub mod bench;
pub mod leaf;
pub mod netns;
pub mod ovs_instance;
pub mod promtext;
pub mod server;
