// The plan of an in-place beam reorder, shared by the CPU and CUDA kernels: row i of every cache tensor must become
// old row beam_idx[i]. Framework-free (no torch header) so that it compiles for host and device alike.
// Rows are written in topological order, then the remaining cycles are rotated from an existing copy or through one
// scratch row: the least scratch an in-place reorder can use. Design: docs/design.md#beam-reorder-of-kv-caches.
#pragma once

#include <cstdint>

#include "pysample/common.h"

namespace pysample {

constexpr int64_t kScratchRow = -1;

// One copy of a row: `dest` <- `src`, either of which may be kScratchRow (save a row to, or restore it from, scratch).
struct ReorderStep {
  int64_t dest;
  int64_t src;
};

// Room plan_reorder needs for `rows` rows: its steps, and its work array (int64 values).
PYSAMPLE_HD int64_t plan_steps_size(int64_t rows) { return rows + rows / 2; }
PYSAMPLE_HD int64_t plan_work_size(int64_t rows) { return 3 * rows; }

// Writes the steps that reorder `rows` rows by `beam_idx` (every value in [0, rows)) to `steps`
// (plan_steps_size(rows)) and returns their number; `work` holds plan_work_size(rows) values.
template <typename Index>
PYSAMPLE_HD int64_t plan_reorder(const Index* beam_idx, int64_t rows, int64_t* work, ReorderStep* steps) {
  int64_t* readers = work;          // rows still to be written that read this row's old content; -1 once written
  int64_t* ready = work + rows;     // rows that can be written now (a stack)
  int64_t* copy = work + 2 * rows;  // a row already holding this row's old content, or -1
  for (int64_t i = 0; i < rows; ++i) readers[i] = 0, copy[i] = -1;
  for (int64_t i = 0; i < rows; ++i) {
    if (beam_idx[i] != i) ++readers[beam_idx[i]];
  }
  int64_t count = 0, top = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (beam_idx[i] != i && readers[i] == 0) ready[top++] = i;
  }
  while (top > 0) {
    const int64_t row = ready[--top];
    const int64_t parent = beam_idx[row];
    steps[count++] = {row, parent};
    readers[row] = -1;
    copy[parent] = row;  // rows are written once: `row` keeps the parent's old content
    if (beam_idx[parent] != parent && --readers[parent] == 0) ready[top++] = parent;
  }
  // Left: cycles, each row read by its predecessor only. Copy along the cycle from a row whose old content is held
  // elsewhere (or saved to scratch first), ending with that content.
  for (int64_t start = 0; start < rows; ++start) {
    if (beam_idx[start] == start || readers[start] < 0) continue;
    int64_t first = start;
    for (int64_t row = beam_idx[start]; row != start && copy[first] < 0; row = beam_idx[row]) {
      if (copy[row] >= 0) first = row;
    }
    const int64_t held = copy[first];
    if (held < 0) steps[count++] = {kScratchRow, first};
    int64_t row = first;
    while (beam_idx[row] != first) {
      steps[count++] = {row, static_cast<int64_t>(beam_idx[row])};
      readers[row] = -1;
      row = beam_idx[row];
    }
    steps[count++] = {row, held >= 0 ? held : kScratchRow};
    readers[row] = -1;
  }
  return count;
}

// Where the moved bytes of a cache tensor's rows lie: row r moves the `span_bytes` bytes at r * row_bytes +
// s * span_stride (from the tensor's data) for every span s in [0, spans): the whole row, or with a filled length,
// per head (dim 1) the first `filled_length` positions of dim 2 ([rows, heads, seq, ...]).
struct RowLayout {
  int64_t row_bytes;
  int64_t spans;
  int64_t span_bytes;
  int64_t span_stride;
};

// `filled_length` < 0: the whole row.
PYSAMPLE_HD RowLayout row_layout(int64_t element_size, const int64_t* sizes, const int64_t* strides,
                                 int64_t filled_length) {
  const int64_t row_bytes = strides[0] * element_size;
  if (filled_length < 0) return {row_bytes, 1, row_bytes, row_bytes};
  return {row_bytes, sizes[1], filled_length * strides[2] * element_size, strides[1] * element_size};
}

}  // namespace pysample
