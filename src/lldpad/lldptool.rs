//! lldptool argv and reply parsing.
//! TODO(lldptool helper).
