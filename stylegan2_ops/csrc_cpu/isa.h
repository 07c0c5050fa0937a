// The vector instruction set the CPU kernels run with, chosen once at run time from what the CPU
// reports (CPUID), so that one build (an image built on one x86-64 machine) runs its best
// variant on every other.
//
// Each kernel body is written once as an always-inline function; SG2_DISPATCH defines wrappers
// with target attributes that inline it, which compiles the body once per instruction set, and
// a dispatcher that calls the one for active_isa(). (GCC's target_clones("arch=<cpu>") was not
// used for this: its resolver matches the exact CPU model, so every CPU newer than the named
// ones silently got the baseline variant.)
#pragma once

#include <cstdint>

#define SG2_INLINE __attribute__((always_inline)) inline

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SG2_X86_VARIANTS 1
#define SG2_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#define SG2_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define SG2_X86_VARIANTS 0
#endif

namespace sg2 {

enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The best instruction set this CPU supports, lowered by $SG2_CPU_ISA (baseline, avx2, avx512)
// when that names a lesser one; read once per process.
Isa active_isa();
// The CPU's best, whatever $SG2_CPU_ISA says.
Isa supported_isa();
const char* isa_name(Isa isa);

// Calls of each variant so far (indexed by Isa), for the tests: that the dispatcher ran the
// variant it reports.
void count_call(Isa isa);
int64_t calls_of(Isa isa);

}  // namespace sg2

// Defines `static void name params` that runs `body args` compiled for active_isa().
#if SG2_X86_VARIANTS
#define SG2_DISPATCH(name, body, params, args)           \
  SG2_TARGET_AVX512 static void name##_avx512 params {   \
    ::sg2::count_call(::sg2::Isa::kAvx512);              \
    body args;                                           \
  }                                                      \
  SG2_TARGET_AVX2 static void name##_avx2 params {       \
    ::sg2::count_call(::sg2::Isa::kAvx2);                \
    body args;                                           \
  }                                                      \
  static void name##_baseline params {                   \
    ::sg2::count_call(::sg2::Isa::kBaseline);            \
    body args;                                           \
  }                                                      \
  static void name params {                              \
    switch (::sg2::active_isa()) {                       \
      case ::sg2::Isa::kAvx512:                          \
        name##_avx512 args;                              \
        return;                                          \
      case ::sg2::Isa::kAvx2:                            \
        name##_avx2 args;                                \
        return;                                          \
      default:                                           \
        name##_baseline args;                            \
        return;                                          \
    }                                                    \
  }
#else
#define SG2_DISPATCH(name, body, params, args) \
  static void name params {                    \
    ::sg2::count_call(::sg2::Isa::kBaseline);  \
    body args;                                 \
  }
#endif
