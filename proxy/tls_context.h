#pragma once
// Server-side TLS for the listeners (OpenSSL through Asio's ssl): TLS 1.2+, modern AEAD
// ciphers, ALPN h2 then http/1.1. A TlsContextHolder is shared by every worker's acceptor of
// one listener; SIGHUP swaps in a context built from the (possibly renewed) files, new
// handshakes use it and established connections keep theirs.

#include <boost/asio/ssl.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "config/config.h"

namespace infergate::proxy {

using TlsContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// Builds a server context from PEM files. Null and a message naming the file on failure
// (missing or unreadable file, not a certificate, bad key, key not matching the certificate).
TlsContextPtr make_server_tls_context(const config::TlsConfig& tls, std::string* error);

// The context of one listener, replaceable at run time. Thread-safe.
class TlsContextHolder {
 public:
  explicit TlsContextHolder(TlsContextPtr ctx) : ctx_(std::move(ctx)) {}
  TlsContextPtr get() const { return ctx_.load(std::memory_order_acquire); }
  void set(TlsContextPtr ctx) { ctx_.store(std::move(ctx), std::memory_order_release); }

 private:
  std::atomic<TlsContextPtr> ctx_;
};

// The ALPN protocol a handshake settled on ("h2", "http/1.1"), empty if none.
std::string negotiated_alpn(SSL* ssl);

}  // namespace infergate::proxy
