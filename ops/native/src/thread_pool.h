// Thread pool of the binding (included by binding.cpp only; see the comment on Pool).
#pragma once
#include <pybind11/pybind11.h>
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
    pool().run((int)t, chunk);
}

}  // namespace bsr_pool
