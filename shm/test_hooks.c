/*
 * test_hooks.c — the test hooks (test_hooks.h); compiled only with
 * CF_TEST_HOOKS.
 */
#include "test_hooks.h"

#include "pool.h"

#ifndef CF_TEST_HOOKS
#error "test_hooks.c is built only with CF_TEST_HOOKS (see CMakeLists.txt)"
#endif

void cf__test_set_fault_hook(cf__fault_hook_fn hook) {
  cf__fault_hook = hook;
}

pid_t cf__test_zygote_pid(cf_executor *ex) {
  cf__pool *p = (cf__pool *)ex;
  cf__pp_lock(p);
  pid_t z = p->zygote_pid;
  cf__pp_unlock(p);
  return z;
}

pid_t cf__test_worker_pid(cf_executor *ex, unsigned i) {
  cf__pool *p = (cf__pool *)ex;
  cf__pp_lock(p);
  pid_t pid = i < p->cfg.nworkers && p->w[i].alive ? p->w[i].pid : 0;
  cf__pp_unlock(p);
  return pid;
}

unsigned cf__test_workers_alive(cf_executor *ex) {
  cf__pool *p = (cf__pool *)ex;
  cf__pp_lock(p);
  unsigned n = p->nalive;
  cf__pp_unlock(p);
  return n;
}

unsigned cf__test_deadlines(cf_executor *ex) {
  cf__pool *p = (cf__pool *)ex;
  cf__pp_lock(p);
  unsigned n = p->slots.nheap;
  cf__pp_unlock(p);
  return n;
}

unsigned cf__test_slots_in_use(cf_executor *ex) {
  cf__pool *p = (cf__pool *)ex;
  cf__pp_lock(p);
  unsigned n = p->slots.n - p->slots.nfree;
  cf__pp_unlock(p);
  return n;
}

uint64_t cf__test_notices(cf_executor *ex) {
  /* relaxed: a statistic */
  return atomic_load_explicit(&((cf__pool *)ex)->notices, memory_order_relaxed);
}

void cf__test_worker_idle_forever(void) {
  cf__test_idle_check_ns = -1;
}

int cf__test_segment_seals(cf_executor *ex) {
  return ((cf__pool *)ex)->cfg.seg.seals;
}

size_t cf__test_segment_size(cf_executor *ex) {
  return ((cf__pool *)ex)->cfg.seg.size;
}
