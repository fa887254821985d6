//! rustls acceptor and connector.
