//! Daemon process: threads, signals, pid file, shutdown.
//! TODO(core helper).
