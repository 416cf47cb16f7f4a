// Causal attention of one query position against a KV cache, for the query
// heads of one GQA group (they share a KV head), f32.
//
// Attend is a streaming ("flash") softmax over key tiles: running max and sum
// per query head, the output row rescaled whenever the max grows. Memory is a
// fixed stack tile, never O(len), so contexts of many thousand tokens cost
// only time. All heads of the group are processed together per tile, so each
// K and V row is read from memory once per group, not once per head.
//
// Reproducibility contract (batch-1 == batch-N, prefix reuse): the arithmetic
// for query head i depends only on (q_i, k, v, len, head_dim, scale) and the
// Highway target — never on num_q, on the other heads in the call, or on how
// the caller splits a prompt into calls. Key tiles start at key 0 of the
// range given, so a caller that offsets k/v for a sliding window gets tiles
// aligned to the window start.
#pragma once

#include <cstdint>

namespace bioquant {

struct AttendArgs {
  const float* q = nullptr;  // [num_q, head_dim], rows q_stride floats apart
  int64_t q_stride = 0;
  int64_t num_q = 1;         // query heads sharing this KV head, >= 1
  const float* k = nullptr;  // key of position j at k + j * kv_stride
  const float* v = nullptr;  // value of position j at v + j * kv_stride
  int64_t kv_stride = 0;     // floats between positions (= kv_dim)
  int64_t len = 0;           // keys [0, len) are attended, >= 1
  int64_t head_dim = 0;      // any size >= 1
  float scale = 1.f;         // score = scale * q·k (1/sqrt(head_dim))
  float* out = nullptr;  // [num_q, head_dim], rows out_stride apart; must not
                         // overlap q, k or v (it is the running accumulator)
  int64_t out_stride = 0;
};

// SIMD path (best Highway target of this CPU). Throws bioquant::Error on
// len < 1, head_dim < 1 or num_q < 1.
void Attend(const AttendArgs& a);

// Scalar reference: scores in double, two-pass softmax, double accumulation.
// Allocates O(len); for tests.
void AttendRef(const AttendArgs& a);

// Prefill: tokens t in [t_begin, t_end) of a chunk whose token 0 sits at
// cache position pos0; token t attends to positions [first, p] with
// p = pos0 + t and first = max(0, p - window + 1) (window 0 = unlimited).
// Query rows of token t start at q + t * q_token_stride, output rows at
// out + t * out_token_stride; k/v point at cache position 0 of this KV head
// (all positions up to pos0 + t_end - 1 written). Consecutive tokens whose
// keys start at 0 are processed together so each K/V tile is loaded once for
// all their heads (64 rows per pass); the arithmetic per (token, head) is
// exactly Attend's with k/v offset to `first` and len = p - first + 1, so the
// result is bit-identical to attending token by token (decode), whatever
// [t_begin, t_end) split or prompt chunking the caller uses.
struct CausalArgs {
  const float* q = nullptr;  // [n, num_q, head_dim] (strided as below)
  int64_t q_token_stride = 0;
  int64_t q_stride = 0;
  int64_t num_q = 1;
  const float* k = nullptr;  // [positions, kv_stride], this head's column
  const float* v = nullptr;
  int64_t kv_stride = 0;
  int64_t pos0 = 0;    // cache position of token 0
  int64_t window = 0;  // sliding window in keys; 0 = unlimited
  int64_t head_dim = 0;
  float scale = 1.f;
  float* out = nullptr;
  int64_t out_token_stride = 0;
  int64_t out_stride = 0;
};
void AttendCausal(const CausalArgs& a, int64_t t_begin, int64_t t_end);

namespace kernels {

// Test hooks: run the attention kernel on one specific compiled Highway
// target (index < NumAttendTargets()).
int NumAttendTargets();
const char* AttendTargetName(int target_index);
void AttendOnTarget(int target_index, const AttendArgs& a);
// y[i] = the kernel's vector exp(x[i]) on that target (accuracy test).
void AttendExpOnTarget(int target_index, const float* x, float* y, int64_t n);

}  // namespace kernels
}  // namespace bioquant
