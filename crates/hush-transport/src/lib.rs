//! hush-transport: TLS 1.3 over OpenSSL with tls-unique session ids, the SMP and NTF
//! handshakes, and block I/O for clients and servers (reference §2.2–§2.6, §5.1).
