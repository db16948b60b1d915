#include "proxy/config_watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>

#include "common/log.h"

namespace infergate::proxy {
namespace {

constexpr auto kDebounce = std::chrono::milliseconds(100);
constexpr uint32_t kMask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;

bool is_yaml(const std::string& name) {
  auto ends = [&](std::string_view suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".yaml") || ends(".yml");
}

}  // namespace

ConfigWatcher::ConfigWatcher(asio::io_context& io, std::vector<std::string> paths,
                             std::function<void()> on_change)
    : io_(io), paths_(std::move(paths)), on_change_(std::move(on_change)), fd_(io), debounce_(io) {}

ConfigWatcher::~ConfigWatcher() {
  stop();
}

bool ConfigWatcher::start() {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    log::warn("config watch unavailable (inotify: {}); SIGHUP still reloads", std::strerror(errno));
    return false;
  }
  fd_.assign(fd);
  namespace fs = std::filesystem;
  for (const auto& p : paths_) {
    std::error_code ec;
    const bool is_dir = fs::is_directory(p, ec);
    const fs::path path = fs::absolute(p, ec);
    const std::string dir = is_dir ? path.string() : path.parent_path().string();
    auto it = std::find_if(watches_.begin(), watches_.end(),
                           [&](const Watch& w) { return w.dir == dir; });
    if (it == watches_.end()) {
      const int wd = ::inotify_add_watch(fd_.native_handle(), dir.c_str(), kMask);
      if (wd < 0) {
        log::warn("cannot watch {} for changes: {}", dir, std::strerror(errno));
        continue;
      }
      watches_.push_back(Watch{wd, dir, {}});
      it = std::prev(watches_.end());
      if (!is_dir) it->files.push_back(path.filename().string());
    } else if (!is_dir && !it->files.empty()) {
      it->files.push_back(path.filename().string());
    } else if (is_dir) {
      it->files.clear();  // the whole directory
    }
  }
  asio::co_spawn(io_, read_loop(this), asio::detached);
  return true;
}

void ConfigWatcher::stop() {
  error_code ignored;
  debounce_.cancel();
  fd_.close(ignored);
}

bool ConfigWatcher::relevant(int wd, const std::string& name) const {
  for (const auto& w : watches_) {
    if (w.wd != wd) continue;
    if (name == "..data") return true;  // Kubernetes ConfigMap volume update
    if (w.files.empty()) return is_yaml(name);
    return std::find(w.files.begin(), w.files.end(), name) != w.files.end();
  }
  return false;
}

namespace {

// Calls f(wd, name) for each inotify event in data[0, n). Each event is copied out: the buffer
// is a coroutine's local, and GCC does not honour alignas for those (they live in its frame).
template <typename F>
void for_each_event(const char* data, size_t n, F&& f) {
  for (size_t off = 0; off + sizeof(inotify_event) <= n;) {
    inotify_event ev;
    std::memcpy(&ev, data + off, sizeof ev);
    const char* name_at = data + off + sizeof ev;
    const size_t name_room = std::min<size_t>(ev.len, n - off - sizeof ev);
    f(ev.wd, std::string(name_at, strnlen(name_at, name_room)));
    off += sizeof ev + ev.len;
  }
}

}  // namespace

awaitable<void> ConfigWatcher::read_loop(ConfigWatcher* self) {
  std::array<char, 8192> buf;
  for (;;) {
    auto [ec, n] = co_await self->fd_.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec) co_return;  // closed
    bool hit = false;
    for_each_event(buf.data(), n,
                   [&](int wd, const std::string& name) { hit = hit || self->relevant(wd, name); });
    if (!hit || self->pending_) continue;
    // Debounce: an editor's save is several events; reload once they settle.
    self->pending_ = true;
    self->debounce_.expires_after(kDebounce);
    self->debounce_.async_wait([self](const error_code& e) {
      self->pending_ = false;
      if (!e) self->on_change_();
    });
  }
}

}  // namespace infergate::proxy
