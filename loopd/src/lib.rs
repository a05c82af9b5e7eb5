//! loopd
