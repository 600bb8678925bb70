// CPU kernels of the n-gram ban and the sequence bias (rules in pysample/ngram.h). Both touch only the tokens they
// ban or bias: O(history) per row for the n-gram ban (a window is mostly rejected by its last id), O(sequences) for
// the bias, whatever the vocabulary.
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../ngram_args.h"
#include "cpu_rows.h"
#include "pysample/ngram.h"

namespace pysample {
namespace {

void check_lengths(const int64_t* lengths, int64_t rows, int64_t limit, const char* name) {
  if (lengths == nullptr) return;
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK_VALUE(lengths[r] >= 0 && lengths[r] <= limit, name, "[", r, "] must be in [0, ", limit, "], got ",
                      lengths[r]);
  }
}

// Calls visit(start) for the start of every window of n ids of the source that can match the prefix: for n >= 2,
// those whose (n-1)-th id equals the prefix's last (which rejects most windows), found 8 starts at a time by a
// branch-free loop the compiler vectorizes. window_ban then checks each candidate in full.
template <typename Id, typename Visit>
void for_each_candidate_window(const Id* source, int64_t source_length, const Id* prefix, int64_t n, Visit visit) {
  const int64_t windows = source_length - n + 1;
  if (n == 1) {
    for (int64_t start = 0; start < windows; ++start) visit(start);
    return;
  }
  const Id last = prefix[n - 2];
  const Id* column = source + (n - 2);  // column[start]: the window's id compared with `last`
  int64_t base = 0;
  for (; base + 8 <= windows; base += 8) {
    uint32_t hits = 0;
    for (int l = 0; l < 8; ++l) hits |= static_cast<uint32_t>(column[base + l] == last) << l;
    for (; hits != 0; hits &= hits - 1) visit(base + __builtin_ctz(hits));
  }
  for (; base < windows; ++base) {
    if (column[base] == last) visit(base);
  }
}

// A window's check costs about as much as this many tokens of a vectorized pass over a row (for_each_row's unit of
// work): rows of a few hundred source ids are then spread over the threads.
constexpr int64_t kWindowCost = 4;

void no_repeat_ngram_cpu(const at::Tensor& in, const at::Tensor& out, const at::Tensor& ids, const at::Tensor& sources,
                         const NgramParams& params) {
  TORCH_CHECK_VALUE(in.device().is_cpu(), "scores must be on the CPU for the CPU kernel");
  const int64_t batch = in.size(0), vocab = in.size(1), length = ids.size(1);
  const bool own = !sources.defined();
  const int64_t source_width = own ? length : sources.size(1);
  const int64_t rows_per_source = own ? 1 : batch / sources.size(0);
  check_row_values(params.ngram_size, batch, "ngram_size", ValueRange::kNonNegative);
  check_lengths(params.lengths, batch, length, "lengths");
  if (!own) check_lengths(params.source_lengths, sources.size(0), source_width, "source_lengths");
  const bool copy = !in.is_same(out);
  const bool stream = out.nbytes() > kStreamingBytes;
  dispatch_scores(in, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      const scalar_t* in_data = in.const_data_ptr<scalar_t>();
      scalar_t* data = out.data_ptr<scalar_t>();
      const id_t* id_data = ids.const_data_ptr<id_t>();
      const id_t* source_data = own ? id_data : sources.const_data_ptr<id_t>();
      const scalar_t banned = -std::numeric_limits<scalar_t>::infinity();
      // A copied row is read and written once more than the windows' checks: it counts as vocab tokens of work.
      const int64_t work = source_width * kWindowCost + (copy ? vocab : 0);
      for_each_row<NoScratch>(batch, work, [&](int64_t row, NoScratch&) {
        scalar_t* out_row = data + row * out.stride(0);
        if (copy) {  // out is contiguous
          const scalar_t* in_row = in_data + row * in.stride(0);
          if (in.stride(1) == 1) {
            copy_bytes(in_row, out_row, vocab * sizeof(scalar_t), stream);
          } else {
            for (int64_t i = 0; i < vocab; ++i) out_row[i] = in_row[i * in.stride(1)];
          }
        }
        const int64_t n = params.ngram_size.at(row);
        const int64_t row_length = params.lengths ? params.lengths[row] : length;
        if (n == 0 || row_length < n - 1) return;
        const id_t* row_ids = id_data + row * length;
        const id_t* prefix = row_ids + row_length - (n - 1);
        const int64_t source_row = own ? row : row / rows_per_source;
        const id_t* source = source_data + source_row * source_width;
        const int64_t source_length = own                     ? row_length
                                      : params.source_lengths ? params.source_lengths[source_row]
                                                              : source_width;
        for_each_candidate_window(source, source_length, prefix, n, [&](int64_t start) {
          const int64_t id = window_ban(source, source_length, start, prefix, n, vocab);
          if (id >= 0) out_row[id * out.stride(1)] = banned;
        });
      });
    });
  });
}

// Every sequence well formed (offsets increasing from >= 0, within the tokens) and its last token in the
// vocabulary: nothing is read or written out of bounds.
void check_sequences(const at::Tensor& tokens, const at::Tensor& offsets, int64_t vocab) {
  const int64_t* offset = offsets.const_data_ptr<int64_t>();
  const int64_t* token = tokens.const_data_ptr<int64_t>();
  const int64_t count = offsets.size(0) - 1;
  TORCH_CHECK_VALUE(offset[0] >= 0, "sequence_offsets[0] must be >= 0, got ", offset[0]);
  for (int64_t s = 0; s < count; ++s) {
    TORCH_CHECK_VALUE(offset[s + 1] > offset[s] && offset[s + 1] <= tokens.size(0), "sequence ", s,
                      ": sequence_offsets must increase and stay within sequence_tokens (", tokens.size(0), "), got ",
                      offset[s], " then ", offset[s + 1]);
    const int64_t last = token[offset[s + 1] - 1];
    TORCH_CHECK_VALUE(last >= 0 && last < vocab, "sequence ", s, ": its last token ", last,
                      " is not in the vocabulary [0, ", vocab, ")");
  }
}

// A row's sums of bias by token: zero and untouched between rows.
template <typename Computed>
struct BiasTable {
  std::vector<Computed> sum;
  std::vector<uint8_t> touched;
  std::vector<int64_t> tokens;  // the touched ones, in order
  void reserve(int64_t vocab) {
    if (static_cast<int64_t>(sum.size()) >= vocab) return;
    sum.resize(vocab);
    touched.resize(vocab);
  }
};

void bias_sequences_cpu(const at::Tensor& scores, const at::Tensor& ids, const int64_t* lengths,
                        const at::Tensor& tokens, const at::Tensor& offsets, const at::Tensor& biases) {
  TORCH_CHECK_VALUE(scores.device().is_cpu(), "scores must be on the CPU for the CPU kernel");
  const int64_t batch = scores.size(0), vocab = scores.size(1), length = ids.size(1);
  const int64_t count = biases.size(0);
  check_sequences(tokens, offsets, vocab);
  check_lengths(lengths, batch, length, "lengths");
  const int64_t* offset = offsets.const_data_ptr<int64_t>();
  const int64_t* token = tokens.const_data_ptr<int64_t>();
  const float* bias = biases.const_data_ptr<float>();
  dispatch_scores(scores, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      scalar_t* data = scores.data_ptr<scalar_t>();
      const id_t* id_data = ids.const_data_ptr<id_t>();
      using Computed = computed_t<scalar_t>;
      for_each_row<BiasTable<Computed>>(batch, vocab, [&](int64_t row, BiasTable<Computed>& table) {
        const id_t* row_ids = id_data + row * length;
        const int64_t row_length = lengths ? lengths[row] : length;
        for (int64_t s = 0; s < count; ++s) {
          const int64_t prefix = offset[s + 1] - offset[s] - 1;
          if (!ends_with(row_ids, row_length, token + offset[s], prefix)) continue;
          const int64_t t = token[offset[s + 1] - 1];
          if (!table.touched[t]) {
            table.touched[t] = 1;
            table.sum[t] = 0;
            table.tokens.push_back(t);
          }
          table.sum[t] = add_bias<scalar_t>(table.sum[t], bias[s]);
        }
        for (const int64_t t : table.tokens) {
          scalar_t& score = data[row * scores.stride(0) + t * scores.stride(1)];
          score = static_cast<scalar_t>(static_cast<Computed>(score) + table.sum[t]);
          table.touched[t] = 0;
        }
        table.tokens.clear();
      });
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) {
  m.impl("no_repeat_ngram_", &no_repeat_ngram_<no_repeat_ngram_cpu>);
  m.impl("no_repeat_ngram", &no_repeat_ngram<no_repeat_ngram_cpu>);
  m.impl("bias_sequences_", &bias_sequences_<bias_sequences_cpu>);
}

}  // namespace pysample
