#include "proxy/block_pool.h"

#include <doctest/doctest.h>

#include <memory_resource>

#include "proxy/exchange.h"

using infergate::proxy::BlockPool;

TEST_CASE("BlockPool reuses a block given back, up to its cache limit") {
  BlockPool pool(1);
  void* a = pool.allocate(BlockPool::kBlockSize);
  void* b = pool.allocate(100);  // any size up to a block takes a block
  CHECK(a != b);
  pool.deallocate(a, BlockPool::kBlockSize);
  pool.deallocate(b, 100);  // over the limit of 1: freed
  CHECK(pool.cached() == 1);
  CHECK(pool.allocate(BlockPool::kBlockSize) == a);
  CHECK(pool.cached() == 0);
  pool.deallocate(a, BlockPool::kBlockSize);
}

TEST_CASE("BlockPool sends larger requests to the heap, without caching them") {
  BlockPool pool;
  void* big = pool.allocate(3 * BlockPool::kBlockSize);
  pool.deallocate(big, 3 * BlockPool::kBlockSize);
  CHECK(pool.cached() == 0);
}

TEST_CASE("A request's fields in an exchange arena come from the pool, and go back to it") {
  BlockPool pool;
  {
    std::pmr::monotonic_buffer_resource arena(BlockPool::kArenaInitialSize, &pool);
    infergate::proxy::RequestParser parser(
        std::piecewise_construct, std::make_tuple(),
        std::make_tuple(infergate::proxy::FieldsAllocator(&arena)));
    boost::system::error_code ec;
    const std::string_view req =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n{}";
    parser.eager(true);
    parser.put(boost::asio::buffer(req.data(), req.size()), ec);
    REQUIRE(!ec);
    REQUIRE(parser.is_done());
    // Moving the message keeps its allocator (assignment would copy to the heap).
    infergate::proxy::Request msg = parser.release();
    CHECK(msg.get_allocator().resource() == &arena);
    CHECK(msg[boost::beast::http::field::content_type] == "application/json");
    CHECK(pool.cached() == 0);  // the arena holds the block
  }
  CHECK(pool.cached() == 1);  // given back when the exchange ended
}
