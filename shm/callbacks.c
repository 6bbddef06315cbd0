/*
 * callbacks.c — the callback thread (callbacks.h).
 */
#include "callbacks.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "options.h"
#include "sys.h"

/* The pool whose callback thread this thread is (NULL on every other). */
static _Thread_local const cf__pool *tl_callbacks;

bool cf__cb_is_current(const cf__pool *p) {
  return tl_callbacks == p;
}

static void run_jobs(cf__cbjob *j) {
  while (j) {
    cf__cbjob *next = j->next;
    cf__future_run_cb_list(j->f, j->list);
    cf__future_unref(j->f);
    cf__free(j, sizeof *j);
    j = next;
  }
}

static void *cb_main(void *arg) {
  cf__pool *p = arg;
  tl_callbacks = p;
  char name[CF__NAME_SIZE];
  snprintf(name, sizeof name, "%.*s-cb", CF__NAME_PREFIX_MAX, p->cfg.name);
  (void)prctl(PR_SET_NAME, name, 0, 0, 0); /* this thread */
  pthread_mutex_lock(&p->cb_mu);
  for (;;) {
    while (!p->cb_head && !p->cb_stop) pthread_cond_wait(&p->cb_cv, &p->cb_mu);
    cf__cbjob *j = p->cb_head;
    p->cb_head = NULL;
    p->cb_tail = &p->cb_head;
    if (!j) break; /* stopped, and nothing left */
    pthread_mutex_unlock(&p->cb_mu);
    run_jobs(j); /* no lock held: a callback may call anything */
    pthread_mutex_lock(&p->cb_mu);
  }
  p->cb_started = false; /* later jobs run where they are queued */
  pthread_mutex_unlock(&p->cb_mu);
  return NULL;
}

int cf__cb_start(cf__pool *p) {
  p->cb_head = NULL;
  p->cb_tail = &p->cb_head;
  p->cb_started = true;
  if (pthread_create(&p->cbt, NULL, cb_main, p) != 0) {
    p->cb_started = false;
    return CF_ESYS;
  }
  p->cb_joinable = true;
  return 0;
}

void cf__cb_stop(cf__pool *p) {
  if (!p->cb_joinable) return;
  cf__assert(!cf__cb_is_current(p));
  pthread_mutex_lock(&p->cb_mu);
  p->cb_stop = true;
  pthread_cond_signal(&p->cb_cv);
  pthread_mutex_unlock(&p->cb_mu);
  pthread_join(p->cbt, NULL);
  p->cb_joinable = false;
}

void cf__cb_enqueue(cf__pool *p, cf_future *f, cf__cb *list) {
  cf__cbjob *j = cf__alloc(sizeof *j);
  bool queued = false;
  if (j) {
    j->next = NULL;
    j->f = f;
    j->list = list;
    pthread_mutex_lock(&p->cb_mu);
    if (p->cb_started) {
      bool was_empty = p->cb_head == NULL;
      *p->cb_tail = j;
      p->cb_tail = &j->next;
      if (was_empty) pthread_cond_signal(&p->cb_cv);
      queued = true;
    }
    pthread_mutex_unlock(&p->cb_mu);
  }
  if (queued) return;
  if (j) cf__free(j, sizeof *j);
  cf__future_run_cb_list(f, list);
  cf__future_unref(f);
}
