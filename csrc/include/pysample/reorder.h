// The plan of an in-place beam reorder, shared by the CPU and CUDA kernels: row i of every cache tensor must become
// old row beam_idx[i]. Framework-free (no torch header) so that it compiles for host and device alike.
//
// Rows with beam_idx[i] == i are not touched. A row is overwritten only once every row that reads its old content
// has been written (rows nobody reads first, as in a topological order); what remains are cycles of the
// permutation, each rotated through one row of scratch. So a fan-out (one parent copied to several children, other
// parents dropped) needs no scratch, and a swap or a longer cycle one row: the least scratch an in-place reorder can
// use.
#pragma once

#include <cstdint>

#include "pysample/warp.h"

namespace pysample {

constexpr int64_t kScratchRow = -1;

// One copy of a row: `dest` <- `src`, either of which may be kScratchRow (save a row to, or restore it from, scratch).
struct ReorderStep {
  int64_t dest;
  int64_t src;
};

// Writes the steps that reorder `rows` rows by `beam_idx` (every value in [0, rows)) to `steps` (room for
// rows + rows / 2) and returns their number. `work` has room for 2 * rows values.
template <typename Index>
PYSAMPLE_HD int64_t plan_reorder(const Index* beam_idx, int64_t rows, int64_t* work, ReorderStep* steps) {
  int64_t* readers = work;     // rows still to be written that read this row's old content; -1 once written
  int64_t* ready = work + rows;  // rows that can be written now (a stack)
  for (int64_t i = 0; i < rows; ++i) readers[i] = 0;
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
    if (beam_idx[parent] != parent && --readers[parent] == 0) ready[top++] = parent;
  }
  // Left: cycles, each row read by its predecessor only. Save one row, copy along the cycle, restore at its end.
  for (int64_t start = 0; start < rows; ++start) {
    if (beam_idx[start] == start || readers[start] < 0) continue;
    steps[count++] = {kScratchRow, start};
    int64_t row = start;
    while (beam_idx[row] != start) {
      steps[count++] = {row, static_cast<int64_t>(beam_idx[row])};
      readers[row] = -1;
      row = beam_idx[row];
    }
    steps[count++] = {row, kScratchRow};
    readers[row] = -1;
  }
  return count;
}

}  // namespace pysample
