#pragma once
// One HTTP/1.1 connection to the simulator: keep-alive, sequential (pipelining-safe) requests,
// routing, and the timed generation of completions. Runs as a named coroutine that owns the
// session through a by-value shared_ptr.
//
// While a request waits for its tokens the session keeps one read pending on the socket, so a
// client that goes away (EOF, reset) is noticed at once, not at the next write: the generation is
// aborted in the engine and counted in aborted_total. Bytes of a pipelined next request that
// arrive meanwhile go into the read buffer and are parsed afterwards.

#include "sim/engine.h"
#include "sim/openai_format.h"
#include "sim/openai_request.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <memory>
#include <string>

namespace infergate::sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

class SimServer;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(std::shared_ptr<SimServer> server, asio::ip::tcp::socket socket);
  ~HttpSession();

  static void start(std::shared_ptr<HttpSession> session);

  // From the server's engine timer, on the session's thread, never inline from one of the
  // session's own calls. Records progress and wakes the waiting coroutine.
  void on_engine_event(const EngineEvent& event);

 private:
  // How a /v1/* exchange ended, for /sim/stats.
  enum class Outcome { kCompleted, kAborted, kFault };

  static asio::awaitable<void> run(std::shared_ptr<HttpSession> self);
  asio::awaitable<bool> read_request();
  asio::awaitable<Outcome> dispatch();
  asio::awaitable<Outcome> handle_generation(Endpoint endpoint);
  asio::awaitable<Outcome> respond_whole(const OpenAiRequest& request, const GenerationPlan& plan,
                                         const ResponseMeta& meta);
  asio::awaitable<Outcome> respond_stream(const OpenAiRequest& request, const GenerationPlan& plan,
                                          const ResponseMeta& meta);
  asio::awaitable<Outcome> handle_metrics();
  asio::awaitable<Outcome> handle_sim_metrics();
  asio::awaitable<Outcome> handle_lora_update(bool load);
  Usage usage_of(int64_t prompt_tokens, int64_t completion_tokens) const;
  asio::awaitable<Outcome> write_response(http::status status, std::string_view content_type,
                                          std::string body, std::string_view allow = {});
  asio::awaitable<Outcome> write_error(ApiError error);
  asio::awaitable<void> wait_wake();
  void wake();

  // Frames event_ as one HTTP chunk at the end of out_; false once --fail-mid-stream-after is
  // reached (that event is still framed).
  bool frame_event();

  void arm_idle_timer();
  void start_watch();
  void arm_watch();
  void on_watch(boost::system::error_code ec, size_t bytes);
  asio::awaitable<void> finish_watch();
  void close_socket();

  std::shared_ptr<SimServer> server_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  bool keep_alive_ = true;

  // Cancelled (never expires) to wake the coroutine; see wait_wake().
  asio::steady_timer wake_timer_;
  asio::steady_timer idle_timer_;
  bool idle_reading_ = false;

  // The generation in flight, if any.
  RequestId engine_id_ = 0;
  bool in_engine_ = false;  // submitted and neither finished nor aborted
  bool streaming_ = false;
  int64_t tokens_ready_ = 0;
  int64_t cached_tokens_ = 0;
  bool finished_ = false;
  std::string model_name_;  // the name the response echoes
  int64_t events_framed_ = 0;

  // Disconnect watch.
  asio::cancellation_signal watch_cancel_;
  bool watching_ = false;
  bool stop_watching_ = false;
  bool peer_gone_ = false;

  std::string event_;  // one SSE event being built
  std::string out_;    // framed chunks waiting to be written
};

}  // namespace infergate::sim
