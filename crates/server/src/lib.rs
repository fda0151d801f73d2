//! pave-server
