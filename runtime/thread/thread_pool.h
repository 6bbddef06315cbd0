/*
 * thread_pool.h — the work-stealing thread pool (internal view).
 *
 * The public entry point is cf_thread_pool_new() (cfutures.h). This header
 * gives other runtime files (and white-box tests) a few questions they may
 * ask about the calling thread.
 */
#ifndef CF_RUNTIME_THREAD_POOL_H
#define CF_RUNTIME_THREAD_POOL_H

#include <stdbool.h>

#include "executor.h"

/* Index of the calling thread among `ex`'s workers, or -1 if it is not one
 * of them (ex may be NULL: any thread pool). Any thread. */
int cf__thread_pool_worker_index(const cf_executor *ex);

#endif /* CF_RUNTIME_THREAD_POOL_H */
