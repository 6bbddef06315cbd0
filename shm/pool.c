/*
 * pool.c — the end of a process pool's life: the last reference frees the
 * parent-side state and the segment (pool.h).
 */
#include "pool.h"

#include <stdlib.h>
#include <unistd.h>

#include "callbacks.h"
#include "exec.h"
#include "registry.h"
#include "supervisor.h"

bool cf__pp_own_thread(const cf__pool *p) {
  return cf__sv_is_current(p) || cf__cb_is_current(p);
}

static void pool_free(cf__pool *p) {
  cf__registry_remove(&p->cfg);
  cf__seg_unmap(&p->cfg.seg);
  if (p->cfg.evfd >= 0) close(p->cfg.evfd);
  if (p->cfg.sock >= 0) close(p->cfg.sock);
  if (p->zpidfd >= 0) close(p->zpidfd);
  int z = atomic_load(&p->cfg.zsock);
  if (z >= 0) close(z);
  cf__mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->cb_mu);
  pthread_cond_destroy(&p->cb_cv);
  cf__slots_fini(&p->slots);
  cf__text_free(&p->cfg.text);
  cf__exec_snapshot_free(&p->cfg);
  free(p->order);
  free(p->w);
  free(p->repush);
  free(p->out);
  p->base.magic = 0;
  free(p);
}

void cf__pp_unref(cf__pool *p) {
  /* acq_rel: every use of the pool happens before the free */
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) pool_free(p);
}
