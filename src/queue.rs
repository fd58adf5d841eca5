//! VdpMsgPriQue / VdpQueMsg.
//! TODO(core helper).
