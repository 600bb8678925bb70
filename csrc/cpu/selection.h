// Exact selection among few elements: radix select over order-preserving keys, by weight or by rank. Included by a
// kernel's file, in an anonymous namespace.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_rows.h"

namespace pysample {
namespace {

// ---- selection ---------------------------------------------------------------------------------------------

// An element of a selection, ordered by ascending (key, tie); `weight` is its probability mass (1 when selecting
// by rank) and `value` the float its key was made from.
struct Elem {
  uint32_t key;
  uint32_t tie;
  float weight;
  float value;
};

struct Found {
  bool found;  // false when the weights never reach the target
  Elem elem;
};

// Branch-free, so that loops marking the elements up to a bound vectorize.
bool operator<=(const Elem& a, const Elem& b) { return (a.key < b.key) | ((a.key == b.key) & (a.tie <= b.tie)); }

constexpr int kRadixLevels = 3;
constexpr int kRadixDigits = 2048;      // 11-bit digits
constexpr size_t kSortDirectly = 256;  // below this many elements a sort beats a histogram of the digits
constexpr int kDigitShift[kRadixLevels] = {21, 10, 0};
constexpr uint32_t kDigitMask[kRadixLevels] = {0x7FF, 0x7FF, 0x3FF};

inline uint32_t digit(uint32_t key, int level) { return (key >> kDigitShift[level]) & kDigitMask[level]; }

// hist[d] = sum of weight(i) over i in [0, n) with digit(i) == d. On long inputs, four interleaved histograms, so
// that a run of one digit (ties, such as a row's many -inf) does not make every add wait on the previous one; short
// ones do not pay for clearing and adding them.
template <typename T, typename Digit, typename Weight>
void digit_histogram(int64_t n, Digit digit, Weight weight, T* hist) {
  std::fill(hist, hist + kRadixDigits, T{});
  if (n < 16 * kRadixDigits) {
    for (int64_t i = 0; i < n; ++i) hist[digit(i)] += weight(i);
    return;
  }
  T part[3][kRadixDigits] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    hist[digit(i)] += weight(i);
    for (int l = 1; l < 4; ++l) part[l - 1][digit(i + l)] += weight(i + l);
  }
  for (; i < n; ++i) hist[digit(i)] += weight(i);
  for (int d = 0; d < kRadixDigits; ++d) hist[d] += (part[0][d] + part[1][d]) + part[2][d];
}

// The first element at which the running weight, in ascending (key, tie) order, reaches `target` > 0, given the
// weight `before` of everything ordered before `elems`. Radix select: a histogram of mass per 11-bit digit of the
// key finds the digit the running weight crosses at, only that digit's elements go on to the next digit; the few
// left at the end are sorted.
Found select_by_weight(std::vector<Elem>& elems, std::vector<Elem>& spare, double target, double before = 0) {
  std::vector<Elem>* cur = &elems;
  std::vector<Elem>* next = &spare;
  double mass[kRadixDigits];
  for (int level = 0; level < kRadixLevels && cur->size() > kSortDirectly; ++level) {
    const Elem* e = cur->data();
    digit_histogram(
        static_cast<int64_t>(cur->size()), [&](int64_t i) { return digit(e[i].key, level); },
        [&](int64_t i) { return static_cast<double>(e[i].weight); }, mass);
    int crossing = -1;
    for (uint32_t d = 0; d <= kDigitMask[level]; ++d) {
      if (mass[d] > 0 && before + mass[d] >= target) {
        crossing = static_cast<int>(d);
        break;
      }
      before += mass[d];
    }
    if (crossing < 0) return {false, {}};
    next->clear();
    for (const Elem& e : *cur) {
      if (digit(e.key, level) == static_cast<uint32_t>(crossing)) next->push_back(e);
    }
    std::swap(cur, next);
  }
  auto in_order = [](const Elem& a, const Elem& b) { return !(b <= a); };
  if (cur->size() > kSortDirectly) {
    // The digits cover the whole key: the elements left are ties (one value, one weight), often a row's many -inf.
    // Only their tie order matters, and only at the element where the running weight crosses: no sort.
    for (size_t i = 0; i < cur->size(); ++i) {
      before += (*cur)[i].weight;
      if (before >= target) {
        std::nth_element(cur->begin(), cur->begin() + i, cur->end(), in_order);
        return {true, (*cur)[i]};
      }
    }
    return {false, {}};
  }
  std::sort(cur->begin(), cur->end(), in_order);
  for (const Elem& e : *cur) {
    before += e.weight;
    if (before >= target) return {true, e};
  }
  return {false, {}};
}

// The element of rank `rank` (1-based, <= n) in ascending (key(j), tie(j)) order over j in [0, n): radix select with
// the first level read through the functions, so no element array is written for the whole row.
template <typename Key, typename Tie>
Elem select_by_rank(int64_t n, const float* value, Key key, Tie tie, int64_t rank, std::vector<Elem>& elems,
                    std::vector<Elem>& spare) {
  int64_t count[kRadixDigits];
  digit_histogram(n, [&](int64_t j) { return digit(key(j), 0); }, [](int64_t) { return int64_t{1}; }, count);
  int64_t before = 0;
  uint32_t crossing = 0;
  while (before + count[crossing] < rank) before += count[crossing++];
  elems.clear();
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t k = key(j);
    if (digit(k, 0) == crossing) elems.push_back({k, tie(j), 1.0f, value[j]});
  }
  // Within the digit, unit weights: the running weight reaches `rank` exactly at the wanted element.
  return select_by_weight(elems, spare, static_cast<double>(rank), static_cast<double>(before)).elem;
}

}  // namespace
}  // namespace pysample
