// Peak arithmetic rate of this CPU's vector units, measured directly.
//
// Independent chains of AVX-512 fp32 FMAs (vfmadd231ps: 16 lanes x multiply + add = 32 FLOP) and of
// bf16 dot products (vdpbf16ps: 16 lanes x two bf16 products added to an fp32 lane = 64 FLOP). With
// 16 accumulators per thread the latency of either instruction is covered, so the loop runs at the
// units' throughput and touches no memory: no matmul kernel can beat these rates. Built and run by
// benchmarks/cpu_peak.py:
//
//     cc -O3 -mavx512f -mavx512bf16 -fopenmp cpu_peak.c -o cpu_peak && ./cpu_peak [iters] [trials]
//
// prints one JSON line per (instruction, thread count): the best of the trials in GFLOP/s.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NACC 16

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float sum_lanes(const __m512 *acc) {
  __m512 s = acc[0];
  for (int k = 1; k < NACC; ++k) s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
}

// The timed part, shared by both kernels: NACC independent chains, acc[k] = STEP per iteration.
#define RUN_CHAINS(STEP)                                                \
  __m512 acc[NACC];                                                     \
  for (int k = 0; k < NACC; ++k) acc[k] = _mm512_set1_ps(seed + k);     \
  for (long it = 0; it < iters; ++it) {                                 \
    _Pragma("GCC unroll 16") for (int k = 0; k < NACC; ++k) acc[k] = STEP; \
  }                                                                     \
  return sum_lanes(acc)

// acc = acc * 0.5 + x converges to 2x: no overflow or denormals however long it runs.
__attribute__((noinline)) static float fma_loop(long iters, float seed) {
  const __m512 x = _mm512_set1_ps(1e-3f * seed), y = _mm512_set1_ps(0.5f);
  RUN_CHAINS(_mm512_fmadd_ps(acc[k], y, x));
}

// acc += a . b with products near 1e-6: stays finite and normal for any iteration count used here.
__attribute__((noinline)) static float dot_loop(long iters, float seed) {
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f * seed), _mm512_set1_ps(1e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  RUN_CHAINS(_mm512_dpbf16_ps(acc[k], a, b));
}

int main(int argc, char **argv) {
  const long iters = argc > 1 ? atol(argv[1]) : 20000000;
  const int trials = argc > 2 ? atoi(argv[2]) : 5;
  const int cores = omp_get_max_threads();
  const char *names[2] = {"fp32_fma", "bf16_dot"};
  const double flop_per_instr[2] = {32.0, 64.0};
  const int thread_counts[2] = {1, cores};
  float sink = 0;
  for (int ti = 0; ti < (cores > 1 ? 2 : 1); ++ti) {
    const int thr = thread_counts[ti];
    for (int kind = 0; kind < 2; ++kind) {
      double best = 0;
      for (int t = 0; t < trials; ++t) {
        const double t0 = now();
#pragma omp parallel num_threads(thr) reduction(+ : sink)
        sink += kind == 0 ? fma_loop(iters, 1.0f + omp_get_thread_num())
                          : dot_loop(iters, 1.0f + omp_get_thread_num());
        const double gflop_s = thr * (double)iters * NACC * flop_per_instr[kind] / (now() - t0) / 1e9;
        if (gflop_s > best) best = gflop_s;
      }
      printf("{\"kind\": \"%s\", \"threads\": %d, \"gflop_s\": %.1f}\n", names[kind], thr, best);
    }
  }
  // Printing the sums keeps the compiler from dropping the loops.
  fprintf(stderr, "checksum %g\n", (double)sink);
  return 0;
}
