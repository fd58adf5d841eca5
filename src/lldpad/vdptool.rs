//! vdptool argv and reply parsing.
//! TODO(vdptool helper).
