// CPU kernel of the token bitmask (layout in pysample/token_bitmask.h). Rows in parallel, each a word of the bitmask
// at a time: a word of all ones is skipped, so a row of allowed tokens costs a read of its words alone.
// Semantics and layout after xgrammar's apply_token_bitmask_inplace.
#include <torch/library.h>

#include <cstring>
#include <limits>
#include <vector>

#include "../token_bitmask_args.h"
#include "cpu_rows.h"
#include "pysample/token_bitmask.h"

namespace pysample {
namespace {

// The logits are only ever set to -inf, never read as numbers: the kernel works on their storage, an unsigned
// integer of the dtype's width, so that one loop serves every dtype.
template <size_t Bytes>
struct Storage;
template <>
struct Storage<2> {
  using type = uint16_t;
};
template <>
struct Storage<4> {
  using type = uint32_t;
};
template <>
struct Storage<8> {
  using type = uint64_t;
};

// Whole words of a contiguous row: each word with a cleared bit in a loop of constant length, the compiler's blend of
// -inf by the word's bits (its allowed tokens are written back as they were). Five times faster than a store per
// cleared bit when most tokens are masked.
template <typename Bits>
PYSAMPLE_CPU_CLONES void mask_whole_words(Bits* row, const uint32_t* words, int64_t word_stride, int64_t count,
                                          Bits masked) {
  for (int64_t w = 0; w < count; ++w) {
    const uint32_t banned = ~words[w * word_stride];
    if (banned == 0) continue;
    Bits* x = row + w * kBitmaskBitsPerWord;
    for (int j = 0; j < kBitmaskBitsPerWord; ++j) x[j] = (banned >> j) & 1 ? masked : x[j];
  }
}

// Words [first_word, bitmask_words(vocab_size)) of a row of any stride: a store per cleared bit.
template <typename Bits>
void mask_tokens(Bits* row, int64_t stride, const uint32_t* words, int64_t word_stride, int64_t first_word,
                 int64_t vocab_size, Bits masked) {
  for (int64_t w = first_word; w < bitmask_words(vocab_size); ++w) {
    for (uint32_t banned = masked_bits(words[w * word_stride], w, vocab_size); banned != 0; banned &= banned - 1) {
      row[(w * kBitmaskBitsPerWord + __builtin_ctz(banned)) * stride] = masked;
    }
  }
}

void apply_token_bitmask_cpu(const at::Tensor& logits, const at::Tensor& bitmask, const at::Tensor& indices,
                             int64_t vocab_size) {
  TORCH_CHECK_VALUE(logits.device().is_cpu(), "logits must be on the CPU for the CPU kernel");
  const int64_t batch = logits.size(0);
  // The rows to mask, every index checked before anything is written; a duplicate masks its row once.
  std::vector<uint8_t> selected;
  if (indices.defined()) {
    selected.assign(batch, 0);
    dispatch_ids(indices, [&](auto index_zero) {
      const auto* index = indices.const_data_ptr<decltype(index_zero)>();
      for (int64_t i = 0; i < indices.numel(); ++i) {
        TORCH_CHECK_INDEX(index[i] >= 0 && index[i] < batch, "indices[", i, "] = ", index[i],
                          " is out of range for logits with ", batch, " rows");
        selected[index[i]] = 1;
      }
    });
  }
  const auto* words = reinterpret_cast<const uint32_t*>(bitmask.const_data_ptr<int32_t>());
  const int64_t row_stride = logits.stride(0), stride = logits.stride(1);
  dispatch_scores(logits, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    using Bits = typename Storage<sizeof(scalar_t)>::type;
    const scalar_t minus_inf = -std::numeric_limits<scalar_t>::infinity();
    Bits masked;
    std::memcpy(&masked, &minus_inf, sizeof masked);
    auto* data = static_cast<Bits*>(logits.data_ptr());
    // Whole words of a contiguous row go through the vectorized loop; the last, partial word one bit at a time.
    const int64_t whole = stride == 1 ? vocab_size / kBitmaskBitsPerWord : 0;
    for_each_row<NoScratch>(batch, vocab_size, [&](int64_t row, NoScratch&) {
      if (!selected.empty() && !selected[row]) return;
      Bits* x = data + row * row_stride;
      const uint32_t* row_words = words + row * bitmask.stride(0);
      if (whole > 0) mask_whole_words(x, row_words, bitmask.stride(1), whole, masked);
      mask_tokens(x, stride, row_words, bitmask.stride(1), whole, vocab_size, masked);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("apply_token_bitmask_", &apply_token_bitmask_<apply_token_bitmask_cpu>); }

}  // namespace pysample
