//! Uplink detection, sysfs, bonds.
//! TODO(lldptool helper).
