// The token bitmask's layout, which the CPU and CUDA kernels share (xgrammar's, so that grammar engines' masks are
// used as they are): token t of a row is allowed where bit t % 32 of the row's int32 word t / 32 is set; a cleared
// bit sets the token's logit to -inf. Framework-free (no torch header) so that it compiles for host and device alike.
// Design: docs/design.md#token-bitmask.
#pragma once

#include <cstdint>

#include "pysample/common.h"

namespace pysample {

constexpr int64_t kBitmaskBitsPerWord = 32;

// Words of a row's bitmask that cover `vocab_size` tokens.
PYSAMPLE_HD int64_t bitmask_words(int64_t vocab_size) {
  return (vocab_size + kBitmaskBitsPerWord - 1) / kBitmaskBitsPerWord;
}

// The tokens of word `w` the mask sets to -inf, as bits: its cleared bits, those of tokens at or past vocab_size
// dropped (they are left alone).
PYSAMPLE_HD uint32_t masked_bits(uint32_t word, int64_t w, int64_t vocab_size) {
  const int64_t left = vocab_size - w * kBitmaskBitsPerWord;
  const uint32_t in_vocab = left >= kBitmaskBitsPerWord ? ~0u : (1u << left) - 1;
  return ~word & in_vocab;
}

}  // namespace pysample
