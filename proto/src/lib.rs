//! loopd control protocol.
