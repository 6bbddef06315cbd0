/*
 * callbacks.h — the process pool's callback thread (internal).
 *
 * DESIGN
 * User done-callbacks of process futures run on one thread of the pool in
 * the parent, never on the supervisor: a slow or blocking callback delays
 * only the callbacks queued after it, never a deadline, a crash report, a
 * respawn or a wake-up (the library's own callbacks, for cf_wait and
 * as_completed, run where the future settles: settle.h). Settlers queue a
 * job (the future, with a reference, and its user callbacks in order) on a
 * FIFO under cb_mu; the thread takes the whole queue at once and runs it
 * with no lock held. It stops once the pool is destroyed and its queue is
 * empty. A callback may call the pool (submit, wait on other futures,
 * shutdown without WAIT); cf_executor_destroy there returns CF_EINVAL.
 */
#ifndef CF_SHM_CALLBACKS_H
#define CF_SHM_CALLBACKS_H

#include <stdbool.h>

#include "pool.h"

/* Start the thread (the caller blocks signals around it): 0 or CF_ESYS. */
int cf__cb_start(cf__pool *p);
/* Run what is queued, stop the thread and join it. Not on that thread. */
void cf__cb_stop(cf__pool *p);
/* Queue f's user callbacks `list` (f's reference moves to the job). If the
 * job cannot be allocated, or the thread is not running, they run here. Any
 * thread, mu not held. */
void cf__cb_enqueue(cf__pool *p, cf_future *f, cf__cb *list);
/* Is the calling thread p's callback thread? */
bool cf__cb_is_current(const cf__pool *p);

#endif /* CF_SHM_CALLBACKS_H */
