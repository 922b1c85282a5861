// A team of host "threads" standing in for the threads of a CUDA block, and
// the barrier they meet at. Two ways to run a team:
//   - Threads: one std::thread per CUDA thread, truly concurrent, so
//     ThreadSanitizer sees every access that a missing barrier leaves
//     unordered. Slow with big blocks on few cores: a barrier of 1024
//     threads costs about 20 ms here (every thread must be scheduled).
//   - Fibers (default): one ucontext fiber per CUDA thread on the calling
//     thread, switched at barriers. A fiber runs until it waits, so a missing
//     barrier lets a thread run ahead of the others and read what they have
//     not written yet (the poisoned shared memory) or overwrite what they
//     have not read: wrong outputs, deterministically. Tens of times faster;
//     invisible to ThreadSanitizer (one OS thread), hence the other mode.
// SHUFFLENET_FUSED_HOST_RUNNER=threads selects threads (the sanitizer builds).
#pragma once

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace shufflenet_fused {
namespace cuda {
namespace host {

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "cuda_on_host: %s\n", what);
  std::abort();
}

enum class TeamMode { Threads, Fibers };

inline TeamMode team_mode() {
  const char* v = std::getenv("SHUFFLENET_FUSED_HOST_RUNNER");
  return v != nullptr && std::strcmp(v, "threads") == 0 ? TeamMode::Threads : TeamMode::Fibers;
}

// The fibers of the team running on this OS thread, if any.
struct FiberTeam;
inline FiberTeam*& current_fiber_team() {
  thread_local FiberTeam* team = nullptr;
  return team;
}
void fiber_yield();
void note_fiber_progress();

// A reusable barrier for a fixed set of team members; a member that leaves
// (drop) no longer counts. The counts sit under a mutex, the generation in an
// atomic (release when the last member arrives, acquire in the waiters: the
// happens-before edges ThreadSanitizer checks). Waiting threads sleep on a
// futex; waiting fibers yield. A thread waiting a minute means a barrier some
// threads never reach (a divergent __syncthreads): report and abort rather
// than hang (fibers detect it at once, see FiberTeam::run).
class Barrier {
 public:
  explicit Barrier(int count) : expected_(count) {}

  void arrive_and_wait() {
    uint32_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = generation_.load(std::memory_order_relaxed);
      note_fiber_progress();
      if (++arrived_ == expected_) {
        release();
        return;
      }
    }
    const bool fiber = current_fiber_team() != nullptr;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (generation_.load(std::memory_order_acquire) == generation) {
      if (fiber) {
        fiber_yield();
        continue;
      }
      if (std::chrono::steady_clock::now() > deadline) die("barrier not reached by every thread within 60 s");
      timespec timeout{1, 0};
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&generation_), FUTEX_WAIT_PRIVATE, generation, &timeout,
              nullptr, 0);
    }
  }

  void arrive_and_drop() {
    std::lock_guard<std::mutex> lock(mutex_);
    note_fiber_progress();
    --expected_;
    if (arrived_ > 0 && arrived_ == expected_) release();
  }

 private:
  void release() {  // under mutex_
    arrived_ = 0;
    generation_.fetch_add(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&generation_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  }

  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word");
  std::mutex mutex_;
  std::atomic<uint32_t> generation_{0};
  int expected_;
  int arrived_ = 0;
};

// Fibers on the calling thread, run round-robin: each runs until it yields
// (waits at a barrier) or returns. A round in which every live fiber yields
// without any barrier having released is a deadlock.
struct FiberTeam {
  static constexpr size_t kStack = 256 * 1024;

  explicit FiberTeam(int n, const std::function<void(int)>& body) : body_(body), contexts_(n), done_(n, false) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    stride_ = kStack + page_;
    bytes_ = stride_ * n;
    void* mem = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("cannot map fiber stacks");
    stacks_ = static_cast<char*>(mem);
    for (int i = 0; i < n; ++i) {
      mprotect(stacks_ + i * stride_, page_, PROT_NONE);  // guard page below each stack
      getcontext(&contexts_[i]);
      contexts_[i].uc_stack.ss_sp = stacks_ + i * stride_ + page_;
      contexts_[i].uc_stack.ss_size = kStack;
      contexts_[i].uc_link = &scheduler_;
      makecontext(&contexts_[i], &FiberTeam::entry, 0);
    }
  }
  ~FiberTeam() { munmap(stacks_, bytes_); }

  void run() {
    FiberTeam*& slot = current_fiber_team();
    slot = this;
    int live = static_cast<int>(contexts_.size());
    while (live > 0) {
      progress_ = false;
      for (current_ = 0; current_ < static_cast<int>(contexts_.size()); ++current_) {
        if (done_[current_]) continue;
        swapcontext(&scheduler_, &contexts_[current_]);
        if (finished_) {
          finished_ = false;
          done_[current_] = true;
          progress_ = true;
          --live;
        }
      }
      if (live > 0 && !progress_) die("deadlock: every thread waits at a barrier the others never reach");
    }
    slot = nullptr;
  }

  void yield() { swapcontext(&contexts_[current_], &scheduler_); }

  void note_progress() { progress_ = true; }
  int current() const { return current_; }

 private:
  static void entry() {
    FiberTeam* team = current_fiber_team();
    team->body_(team->current_);
    team->finished_ = true;  // uc_link returns to the scheduler
  }

  std::function<void(int)> body_;
  std::vector<ucontext_t> contexts_;
  std::vector<bool> done_;
  ucontext_t scheduler_;
  char* stacks_ = nullptr;
  size_t page_ = 0, stride_ = 0, bytes_ = 0;
  int current_ = 0;
  bool progress_ = false, finished_ = false;
};

inline void fiber_yield() { current_fiber_team()->yield(); }

// Any arrival at or departure from a barrier is progress.
inline void note_fiber_progress() {
  if (FiberTeam* team = current_fiber_team()) team->note_progress();
}

// Runs body(0..n-1) as n team members, in the mode asked for.
inline void run_team(int n, const std::function<void(int)>& body) {
  if (team_mode() == TeamMode::Fibers) {
    FiberTeam team(n, body);
    team.run();
    return;
  }
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int t = 0; t < n; ++t) threads.emplace_back(body, t);
  for (std::thread& th : threads) th.join();
}

}  // namespace host
}  // namespace cuda
}  // namespace shufflenet_fused
