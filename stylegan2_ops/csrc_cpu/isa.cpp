#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace sg2 {
namespace {

Isa detect() {
#if SG2_X86_VARIANTS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("fma")) {
    return Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

std::atomic<int64_t> variant_calls[3];

Isa requested(Isa best) {
  const char* value = std::getenv("SG2_CPU_ISA");
  if (value == nullptr || *value == '\0') return best;
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    if (std::strcmp(value, isa_name(isa)) == 0) return isa < best ? isa : best;
  }
  return best;  // an unknown name is reported by the Python side, which reads it too
}

}  // namespace

Isa supported_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() {
  static const Isa isa = requested(supported_isa());
  return isa;
}

void count_call(Isa isa) {
  variant_calls[static_cast<int>(isa)].fetch_add(1, std::memory_order_relaxed);
}

int64_t calls_of(Isa isa) { return variant_calls[static_cast<int>(isa)].load(); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "baseline";
  }
}

}  // namespace sg2
