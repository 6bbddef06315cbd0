/*
 * supervisor.h — the process pool's supervisor thread (internal).
 */
#ifndef CF_SHM_SUPERVISOR_H
#define CF_SHM_SUPERVISOR_H

#include <stdbool.h>

#include "pool.h"

/* The thread's body (pthread_create with the pool as its argument, every
 * signal blocked). It starts the zygote, reports through p->sv_started /
 * p->sv_error under mu, and returns once p->sv_stop is set and the pool has
 * stopped (no zygote, no worker). */
void *cf__supervisor_main(void *arg);
/* Is the calling thread p's supervisor? */
bool cf__sv_is_current(const cf__pool *p);

#endif /* CF_SHM_SUPERVISOR_H */
