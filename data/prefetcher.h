// Prefetcher<T>: one background thread keeps up to K items of a producer ready; errors cross over
// to the consumer in order, and the destructor stops and joins the thread whatever state it is in.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "core/util/check.h"

namespace px::data {

// The producer runs only on the prefetch thread; nullopt ends the stream, an exception ends it
// after the items produced before it. The producer is called only while fewer than K items are
// ready, so it is never more than K calls ahead of the consumer.
template <typename T>
class Prefetcher {
 public:
  using Producer = std::function<std::optional<T>()>;

  Prefetcher(Producer producer, int capacity) : producer_(std::move(producer)), capacity_(capacity) {
    CHECK_GT(capacity, 0) << "prefetch capacity";
    thread_ = std::thread([this] { run(); });
  }

  // Returns promptly when the thread waits on a full queue; a producer call in progress finishes first.
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    not_full_.notify_all();
    thread_.join();
  }

  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next item; blocks only while none is ready. nullopt at the end of the stream (every call
  // after it too); the producer's exception is rethrown once the items before it are consumed,
  // and again on every later call.
  std::optional<T> next() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [this] { return !ready_.empty() || finished_; });
    if (ready_.empty()) {
      if (error_) std::rethrow_exception(error_);
      return std::nullopt;
    }
    T item = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return item;
  }

 private:
  void run() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        not_full_.wait(lock, [this] { return stop_ || static_cast<int>(ready_.size()) < capacity_; });
        if (stop_) return;
      }
      Produced produced = produce_one();
      const bool more = produced.item.has_value();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (more) {
          ready_.push_back(std::move(*produced.item));
        } else {
          error_ = produced.error;
          finished_ = true;
        }
      }
      not_empty_.notify_one();
      if (!more) return;
    }
  }

  // One producer call, its exception caught. Returned whole rather than assigned to an optional
  // declared outside the try: GCC 12 at -O1 and above keeps such an optional engaged after a throw.
  struct Produced {
    std::optional<T> item;
    std::exception_ptr error;
  };
  Produced produce_one() {
    try {
      return Produced{producer_(), nullptr};
    } catch (...) {
      return Produced{std::nullopt, std::current_exception()};
    }
  }

  Producer producer_;
  const int capacity_;
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> ready_;         // produced, not yet consumed; at most capacity_
  bool finished_ = false;       // the producer returned nullopt or threw
  std::exception_ptr error_;    // what it threw
  bool stop_ = false;           // the destructor asks the thread to exit
  std::thread thread_;          // last: starts after every member above exists
};

}  // namespace px::data
