// The thread's "device ids were checked on the host" flag and the host-side id range check.
#include "core/ops/index_check.h"

#include "core/util/check.h"
#include "core/util/error.h"

namespace px {

namespace {
thread_local bool t_device_checks = true;
}  // namespace

HostCheckedIndicesGuard::HostCheckedIndicesGuard() : previous_(t_device_checks) { t_device_checks = false; }
HostCheckedIndicesGuard::~HostCheckedIndicesGuard() { t_device_checks = previous_; }

bool device_index_checks_enabled() { return t_device_checks; }

void check_host_indices(const Tensor& ids, int64_t bound, const std::string& what) {
  CHECK(ids.defined() && ids.device().is_cpu() && (ids.dtype() == DType::i32 || ids.dtype() == DType::i64))
      << what << ": check_host_indices needs host i32/i64 ids, got "
      << (ids.defined() ? ids.str() : std::string("an undefined tensor"));
  CHECK(ids.is_contiguous()) << what << ": check_host_indices needs contiguous ids, got " << ids.str();
  const auto check = [&](const auto* p) {
    for (int64_t i = 0; i < ids.numel(); ++i) {
      const auto id = static_cast<int64_t>(p[i]);
      if (id < 0 || id >= bound) {
        throw Error(what + ": index " + std::to_string(id) + " out of range [0, " + std::to_string(bound) + ")");
      }
    }
  };
  if (ids.dtype() == DType::i32) check(ids.data<int32_t>());
  else check(ids.data<int64_t>());
}

}  // namespace px
