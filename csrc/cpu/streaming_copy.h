// Copies through streaming (non-temporal) stores: SSE2 on x86; elsewhere stream_copy declines (returns false) and
// the caller copies as usual, so that the portable code has no #if. Included by cpu_rows.h, in an anonymous namespace.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pysample {
namespace {

#if defined(__x86_64__)
// Copies `bytes` bytes from `in` to `out` (not overlapping) with streaming stores, fenced before it returns so that
// later ordinary stores and other threads see them in order; returns true.
inline bool stream_copy(const void* in, void* out, int64_t bytes) {
  auto* dst = static_cast<char*>(out);
  const auto* src = static_cast<const char*>(in);
  const int64_t head = std::min<int64_t>(bytes, (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16);
  std::memcpy(dst, src, head);
  int64_t i = head;
  for (; i + 16 <= bytes; i += 16) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), chunk);
  }
  std::memcpy(dst + i, src + i, bytes - i);
  _mm_sfence();
  return true;
}
#else
inline bool stream_copy(const void*, void*, int64_t) { return false; }
#endif

}  // namespace
}  // namespace pysample
