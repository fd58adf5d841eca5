//! vdp-lab server: reference controller (CONTRACT §4).
//! TODO(controller helper).
