// Prefetcher<T>: order, the bound of K ready items, errors delivered in order, end of stream, and
// destruction that never hangs (producer blocked on a full queue, consumer never called).
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/prefetcher.h"

namespace px::data {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A producer of 0, 1, 2, ... that counts its calls; ends after `end` items (or never when end < 0).
struct Counter {
  std::atomic<int> calls{0};
  int end = -1;
  std::optional<int> operator()() {
    const int i = calls.fetch_add(1);
    if (end >= 0 && i >= end) return std::nullopt;
    return i;
  }
};

// Waits up to 5 s for pred.
template <typename Pred>
bool eventually(Pred pred) {
  const auto deadline = Clock::now() + 5s;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(Prefetcher, PreservesOrderAndRepeatsEndOfStream) {
  Counter counter;
  counter.end = 100;
  Prefetcher<int> prefetcher([&] { return counter(); }, 3);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(prefetcher.next(), i);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(prefetcher.next(), std::nullopt);
  EXPECT_EQ(counter.calls.load(), 101);  // nothing is produced after the end
}

TEST(Prefetcher, ProducerNeverMoreThanKAhead) {
  constexpr int kCapacity = 4;
  Counter counter;
  Prefetcher<int> prefetcher([&] { return counter(); }, kCapacity);
  ASSERT_TRUE(eventually([&] { return counter.calls.load() == kCapacity; }));
  for (int consumed = 1; consumed <= 20; ++consumed) {
    ASSERT_EQ(prefetcher.next(), consumed - 1);
    std::this_thread::sleep_for(2ms);
    EXPECT_LE(counter.calls.load(), consumed + kCapacity);
  }
  EXPECT_TRUE(eventually([&] { return counter.calls.load() == 20 + kCapacity; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(counter.calls.load(), 20 + kCapacity);
}

TEST(Prefetcher, ExceptionArrivesAfterTheItemsBeforeIt) {
  int calls = 0;
  Prefetcher<int> prefetcher(
      [&]() -> std::optional<int> {
        if (calls == 3) throw DataError("shard.h5: src_tokens: checksum mismatch");
        return calls++;
      },
      8);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(prefetcher.next(), i);
  EXPECT_THROW(prefetcher.next(), DataError);
  try {
    prefetcher.next();
    FAIL() << "the error should repeat";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "shard.h5: src_tokens: checksum mismatch");
  }
}

TEST(Prefetcher, DestructorReturnsWhileProducerWaitsOnAFullQueue) {
  Counter counter;
  auto prefetcher = std::make_unique<Prefetcher<int>>([&] { return counter(); }, 2);
  ASSERT_TRUE(eventually([&] { return counter.calls.load() == 2; }));
  const auto start = Clock::now();
  prefetcher.reset();
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST(Prefetcher, DestructorWithoutAnyConsumerCall) {
  for (int i = 0; i < 50; ++i) {
    Counter counter;
    Prefetcher<int> prefetcher([&] { return counter(); }, 1 + i % 3);
  }
}

TEST(Prefetcher, DestructorWaitsForASlowProducerCall) {
  std::atomic<bool> in_call{false};
  auto prefetcher = std::make_unique<Prefetcher<int>>(
      [&]() -> std::optional<int> {
        in_call = true;
        std::this_thread::sleep_for(50ms);
        return 1;
      },
      1);
  ASSERT_TRUE(eventually([&] { return in_call.load(); }));
  prefetcher.reset();  // joins once the call in progress returns
}

TEST(Prefetcher, MoveOnlyItems) {
  int i = 0;
  Prefetcher<std::unique_ptr<int>> prefetcher(
      [&]() -> std::optional<std::unique_ptr<int>> {
        if (i == 5) return std::nullopt;
        return std::make_unique<int>(i++);
      },
      2);
  for (int expected = 0; expected < 5; ++expected) EXPECT_EQ(**prefetcher.next(), expected);
  EXPECT_FALSE(prefetcher.next().has_value());
}

}  // namespace
}  // namespace px::data
