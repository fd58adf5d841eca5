//! Controller link (CONTRACT §4): RPC calls, event long-poll, pending results.
//! TODO(controller helper).
