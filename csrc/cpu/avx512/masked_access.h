// Checked masked accesses, for the sanitizer build (scripts/sanitize_cpu.sh).
// AddressSanitizer does not instrument the lanes of a masked AVX-512 load or
// store, so an active lane outside its buffer would go unseen. With
// SF_CHECK_MASKED_ACCESS (set with -fsanitize=address) every masked access
// first asks ASan whether each active lane's element is addressable and
// aborts naming the call site if not; without it the check compiles away.
// Inactive lanes may point anywhere (a displaced row start, past a tail).
#pragma once

#include "cpu/avx512/target.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(SF_CHECK_MASKED_ACCESS)
#include <sanitizer/asan_interface.h>
#endif

#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

template <typename T>
inline void check_masked(const T* p, uint32_t active, const char* site) {
#if defined(SF_CHECK_MASKED_ACCESS)
  for (int lane = 0; lane < 32; ++lane) {
    if (((active >> lane) & 1u) == 0) continue;
    void* element = const_cast<T*>(p) + lane;
    if (__asan_region_is_poisoned(element, sizeof(T)) != nullptr) {
      std::fprintf(stderr, "shufflenet_fused: masked access out of bounds at %s: lane %d, address %p\n", site, lane,
                   element);
      std::abort();
    }
  }
#else
  (void)p;
  (void)active;
  (void)site;
#endif
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
