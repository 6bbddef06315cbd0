/*
 * registry.h — the process pools of this process (internal).
 *
 * A zygote forked from the parent (CF_START_FORK) inherits every other
 * pool's segment mapping and file descriptors. It drops them at once, so
 * that no segment outlives its pool through another pool's processes. The
 * registry is the list it drops them from: a fixed table of atomic pointers
 * to each live pool's configuration, which a freshly forked child reads
 * without a lock (it is single-threaded and nothing changes its copy). A
 * full table loses nothing but that cleanup: the later pools' processes
 * then keep the unlisted pool's segment mapped until they end. An exec'ed
 * zygote (exec.h) inherits nothing and finds the table empty; an exec-mode
 * pool's mapping is MADV_DONTFORK in the parent anyway.
 *
 * Whether a process may use a pool is not the registry's business: the
 * pool's owner_pid (executor.h) says it, in every process.
 */
#ifndef CF_SHM_REGISTRY_H
#define CF_SHM_REGISTRY_H

#include "config.h"

#define CF__MAX_POOLS 64

/* Parent, at creation: once every field of c is set (the seq_cst store
 * that publishes c pairs with the child's load; a fork copies memory
 * anyway). */
void cf__registry_add(cf__pool_cfg *c);
/* Parent, when the pool is freed. */
void cf__registry_remove(cf__pool_cfg *c);
/* In a freshly started zygote of pool `self`: unmap and close what belongs
 * to the other pools, and empty the table. Its fd numbers are stale from
 * here on (this process closed them, and its own pool's parent-side ones),
 * so a pool a worker makes (a pool inside a task) must not find them: its
 * zygote would close whatever reused those numbers. */
void cf__registry_enter_child(const cf__pool_cfg *self);

#endif /* CF_SHM_REGISTRY_H */
