// Thread pool of the binding (included by binding.cpp only; see the comment on Pool).
#pragma once
#include <pybind11/pybind11.h>
#include <dlfcn.h>
#include <pthread.h>

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bsr_pool {

namespace py = pybind11;

// A persistent pool of worker threads (spawning threads per call costs ~50 us, as much as a
// small layer). One job at a time; the calling thread runs chunk 0, worker i runs chunk i+1.
// Plain std::thread + condition variables: no OpenMP, so nothing clashes with torch's runtime.
// After fork() the child starts a fresh pool (the parent's workers do not exist there).
class Pool {
  public:
    void run(int n, const std::function<void(int)>& fn) {
        std::lock_guard<std::mutex> job(job_mu_);
        while ((int)workers_.size() < n - 1) {
            const int id = (int)workers_.size();
            const uint64_t gen = generation_;  // the worker waits for the next job posted
            workers_.emplace_back([this, id, gen]() { loop(id, gen); });
            workers_.back().detach();
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            fn_ = &fn;
            chunks_ = n;
            pending_ = n - 1;
            ++generation_;
        }
        cv_.notify_all();
        std::exception_ptr err;
        try {
            fn(0);
        } catch (...) {
            err = std::current_exception();
        }
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [this]() { return pending_ == 0; });
        fn_ = nullptr;
        if (err) std::rethrow_exception(err);
    }

  private:
    void loop(int id, uint64_t seen) {
        for (;;) {
            const std::function<void(int)>* fn;
            int chunks;
            {
                std::unique_lock<std::mutex> lk(mu_);
                cv_.wait(lk, [&]() { return generation_ != seen; });
                seen = generation_;
                fn = fn_;
                chunks = chunks_;
            }
            if (id + 1 < chunks) (*fn)(id + 1);
            std::lock_guard<std::mutex> lk(mu_);
            if (id + 1 < chunks && --pending_ == 0) done_cv_.notify_all();
        }
    }
    std::mutex job_mu_, mu_;
    std::condition_variable cv_, done_cv_;
    std::vector<std::thread> workers_;
    const std::function<void(int)>* fn_ = nullptr;
    int chunks_ = 0, pending_ = 0;
    uint64_t generation_ = 0;
};

inline Pool* g_pool = nullptr;
inline void reset_pool_after_fork() { g_pool = new Pool(); }  // the old one is leaked on purpose

inline Pool& pool() {
    static bool init = []() {
        g_pool = new Pool();
        pthread_atfork(nullptr, nullptr, reset_pool_after_fork);
        return true;
    }();
    (void)init;
    return *g_pool;
}

// torch's OpenMP runtime (GNU libgomp), attached at import (ops/native/kernels.py finds the copy
// torch loaded and passes its path; nothing is loaded here: RTLD_NOLOAD). With it, a kernel call
// runs on the same OpenMP team as torch's own operators, instead of on this pool's threads
// beside torch's: on 2 cores, torch's workers (which spin for a while after each operator, the
// default OMP_WAIT_POLICY) and this pool's worker otherwise share the cores during a binary
// conv, and every call pays a condition-variable wake-up. GOMP_parallel is libgomp's entry
// point for `#pragma omp parallel` (GCC >= 4.9 ABI).
struct Omp {
    void (*parallel)(void (*)(void*), void*, unsigned, unsigned) = nullptr;
    int (*thread_num)() = nullptr;
    int (*num_threads)() = nullptr;
};
inline Omp g_omp;
inline bool g_use_omp = false;

// Attach to the libgomp at `path` (already loaded by torch); "" on success, else why not.
inline std::string attach_openmp(const std::string& path) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (!h) return "not loaded in this process: " + path;
    Omp o;
    o.parallel = (decltype(o.parallel))dlsym(h, "GOMP_parallel");
    o.thread_num = (decltype(o.thread_num))dlsym(h, "omp_get_thread_num");
    o.num_threads = (decltype(o.num_threads))dlsym(h, "omp_get_num_threads");
    if (!o.parallel || !o.thread_num || !o.num_threads) return "no GOMP_parallel / omp_get_thread_num in " + path;
    g_omp = o;
    g_use_omp = true;
    // a forked child does not use the parent's OpenMP team (libgomp's threads are not there;
    // torch itself goes single-threaded after fork): it takes this extension's pool
    static bool once = []() { return pthread_atfork(nullptr, nullptr, []() { g_use_omp = false; }) == 0; }();
    (void)once;
    return "";
}

// Below this much work per thread (in units of roughly one cycle) waking a worker costs more
// than it saves, so small calls use fewer threads.
inline constexpr double kMinWorkPerThread = 50000.0;

template <class Fn>
void parallel_rows(int64_t rows, int threads, double work_per_row, Fn fn) {
    if (threads < 1) throw std::invalid_argument("threads: must be >= 1, got " + std::to_string(threads));
    int64_t t = threads;
    const double by_work = rows * work_per_row / kMinWorkPerThread;
    if (t > by_work) t = by_work < 1.0 ? 1 : (int64_t)by_work;
    if (t > rows) t = rows > 0 ? rows : 1;
    py::gil_scoped_release release;
    if (t == 1) {
        fn(0, rows);
        return;
    }
    const std::function<void(int)> chunk = [&](int i) { fn(rows * i / t, rows * (i + 1) / t); };
    if (g_use_omp) {
        struct Ctx {
            const std::function<void(int)>* fn;
            int t;
        } ctx{&chunk, (int)t};
        // a smaller team (a nested region, a thread limit) runs the chunks round-robin
        g_omp.parallel(
            [](void* p) {
                const Ctx* c = (const Ctx*)p;
                const int team = g_omp.num_threads(), me = g_omp.thread_num();
                for (int i = me; i < c->t; i += team > 0 ? team : 1) (*c->fn)(i);
            },
            &ctx, (unsigned)t, 0u);
        return;
    }
    pool().run((int)t, chunk);
}

}  // namespace bsr_pool
