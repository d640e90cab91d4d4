// Philox4x32-10 counter-based RNG (Salmon et al., 2011), usable on host and device, so every
// backend draws the same numbers for (seed, counter) and dropout masks can be regenerated.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PX_HOST_DEVICE inline
#endif

namespace px {

struct PhiloxOut {
  uint32_t v[4];
};

// Ten rounds of Philox4x32 on counter (ctr, domain, 0) with key seed. Domains keep draws that
// index counters differently (uniform/normal per counter, dropout per block of four) apart.
PX_HOST_DEVICE PhiloxOut philox4x32(uint64_t seed, uint64_t ctr, uint32_t domain = 0) {
  uint32_t c0 = static_cast<uint32_t>(ctr), c1 = static_cast<uint32_t>(ctr >> 32), c2 = domain, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return PhiloxOut{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 53 random bits, for counter ctr.
PX_HOST_DEVICE double philox_uniform(uint64_t seed, uint64_t ctr) {
  const PhiloxOut o = philox4x32(seed, ctr);
  const uint64_t bits = (static_cast<uint64_t>(o.v[0]) << 21) ^ (o.v[1] >> 11);
  return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Dropout draws: counter ctr uses word ctr % 4 of block ctr / 4 (domain 1), so four consecutive
// counters share one Philox call. Uniform in [0, 1) with 24 random bits.
constexpr uint32_t kPhiloxDropoutDomain = 1;
PX_HOST_DEVICE float philox_word_f32(const PhiloxOut& block, uint64_t ctr) {
  const uint32_t w = (ctr & 2) ? ((ctr & 1) ? block.v[3] : block.v[2]) : ((ctr & 1) ? block.v[1] : block.v[0]);
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f);
}
PX_HOST_DEVICE float philox_uniform_f32(uint64_t seed, uint64_t ctr) {
  return philox_word_f32(philox4x32(seed, ctr >> 2, kPhiloxDropoutDomain), ctr);
}

// Standard normal by Box-Muller on words v0, v1: u1 = (v0 + 1) 2^-32 in (0, 1], u2 = v1 2^-32,
// z = sqrt(-2 ln u1) cos(2 pi u2). Every backend uses this, so normal draws match across devices.
PX_HOST_DEVICE double philox_normal(uint64_t seed, uint64_t ctr) {
  const PhiloxOut o = philox4x32(seed, ctr);
  const double u1 = (static_cast<double>(o.v[0]) + 1.0) * 2.3283064365386963e-10;
  const double u2 = static_cast<double>(o.v[1]) * 2.3283064365386963e-10;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

}  // namespace px
