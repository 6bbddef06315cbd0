/*
 * fault.h — the named fault points of the worker's protocol (internal).
 *
 * A test kills a worker at one of these points (test_hooks.h sets the
 * hook). Only a library built with CF_TEST_HOOKS has the hook; in any other
 * build cf__fault_point() is empty and the worker's path has no hook load.
 */
#ifndef CF_SHM_FAULT_H
#define CF_SHM_FAULT_H

#include <stdint.h>

enum {
  CF__PP_AFTER_POP = 1,      /* hint taken, slot not claimed yet */
  CF__PP_AFTER_CLAIM = 2,    /* RUNNING, task not called yet */
  CF__PP_MID_RESULT = 3,     /* result bytes half written */
  CF__PP_AFTER_COMPLETE = 4, /* done CAS made, waiters not woken yet */
};

typedef void (*cf__fault_hook_fn)(int point, uint32_t slot);

#ifdef CF_TEST_HOOKS
/* Called by the worker at each point if set (defined in worker.c; set
 * through cf__test_set_fault_hook). */
extern cf__fault_hook_fn cf__fault_hook;
/* How long an idle worker sleeps before it looks at the ring on its own
 * (worker.c; -1: never; set through cf__test_worker_idle_forever). */
extern int64_t cf__test_idle_check_ns;
static inline void cf__fault_point(int point, uint32_t slot) {
  cf__fault_hook_fn h = cf__fault_hook;
  if (h) h(point, slot);
}
#else
static inline void cf__fault_point(int point, uint32_t slot) {
  (void)point;
  (void)slot;
}
#endif

#endif /* CF_SHM_FAULT_H */
