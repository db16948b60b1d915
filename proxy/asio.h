#pragma once
// Shared Asio/Beast aliases for proxy/. Data-path operations never throw: they complete with
// an error_code through kNoThrow (as_tuple(use_awaitable)).

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace infergate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

template <typename T>
using awaitable = asio::awaitable<T>;

inline constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

}  // namespace infergate::proxy
