//! Validation of controller input (CONTRACT §4.3).
//! TODO(core helper).
