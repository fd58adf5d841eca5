//! Status socket server and printing (CONTRACT §5).
//! TODO(core helper).
