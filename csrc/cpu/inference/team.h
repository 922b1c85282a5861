// The threads of a batch-below-threads call as one OpenMP team for the whole
// call: each layer is split across the team and ends at a barrier, instead of
// a parallel region (a fork and a join) per layer. A batch-1 network has ~40
// layers, and opening and closing a region costs more than a barrier.
#pragma once

#include <ATen/Parallel.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>

#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

// The first exception any member raised: kept, so that every member still
// reaches every barrier, and rethrown by the caller after the team ends.
class TeamError {
 public:
  void capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!first_) first_ = std::current_exception();
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr first_;
};

class Team {
 public:
  Team(int index, int size, TeamError& error) : index_(index), size_(size), error_(error) {}

  // fn(begin, end) on this member's share of [0, units), shares of at least
  // `grain` units (so fewer members may take part), as at::parallel_for
  // splits a range; then the barrier. Every member must call it, with the
  // same arguments.
  template <typename Fn>
  void split_grain(int64_t units, int64_t grain, const Fn& fn) const {
    if (units > 0) {
      const int64_t used = std::min<int64_t>(size_, (units + grain - 1) / grain);
      const int64_t chunk = (units + used - 1) / used;
      const int64_t begin = index_ * chunk;
      if (index_ < used && begin < units) run([&] { fn(begin, std::min(units, begin + chunk)); });
    }
    barrier();
  }

  // The same over units of `unit_elems` output elements each: below ~4K
  // output elements per share a member costs more than it saves.
  template <typename Fn>
  void split(int64_t units, int64_t unit_elems, const Fn& fn) const {
    split_grain(units, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, unit_elems)), fn);
  }

  // fn(member, members) on every member, then the barrier.
  template <typename Fn>
  void each(const Fn& fn) const {
    run([&] { fn(index_, size_); });
    barrier();
  }

  static void barrier() {
#ifdef _OPENMP
#pragma omp barrier
#endif
  }

 private:
  template <typename Fn>
  void run(const Fn& fn) const {
    try {
      fn();
    } catch (...) {
      error_.capture();
    }
  }

  int index_, size_;
  TeamError& error_;
};

// Runs body(team) on a team of torch's intra-op threads (one without
// OpenMP), opened as at::parallel_for opens its regions (no num_threads
// clause: torch sets the team size); rethrows the first exception after the
// team ends. body's own code, outside split/each, must not throw: a member
// that left early would leave the others at a barrier.
template <typename Body>
void run_team(const Body& body) {
  TeamError error;
#ifdef _OPENMP
#pragma omp parallel
  {
    const at::internal::ThreadIdGuard tid_guard(omp_get_thread_num());
    body(Team(omp_get_thread_num(), omp_get_num_threads(), error));
  }
#else
  body(Team(0, 1, error));
#endif
  error.rethrow();
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
