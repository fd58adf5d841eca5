//! LldpadDriver: VSI table + refresh. TODO(vdptool helper).

/// Placeholder until the vdptool helper lands the driver.
pub struct LldpadDriver;
