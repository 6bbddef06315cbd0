/*
 * registry.c — the table of this process's pools (registry.h).
 */
#include "registry.h"

#include <sys/mman.h>
#include <unistd.h>

static _Atomic(cf__pool_cfg *) pools[CF__MAX_POOLS];

void cf__registry_add(cf__pool_cfg *c) {
  for (int i = 0; i < CF__MAX_POOLS; i++) {
    cf__pool_cfg *none = NULL;
    if (atomic_compare_exchange_strong(&pools[i], &none, c)) return;
  }
}

void cf__registry_remove(cf__pool_cfg *c) {
  for (int i = 0; i < CF__MAX_POOLS; i++) {
    cf__pool_cfg *q = c;
    if (atomic_compare_exchange_strong(&pools[i], &q, NULL)) return;
  }
}

void cf__registry_enter_child(const cf__pool_cfg *self) {
  for (int i = 0; i < CF__MAX_POOLS; i++) {
    const cf__pool_cfg *q = atomic_exchange(&pools[i], NULL); /* see registry.h */
    if (!q || q == self) continue;
    if (q->seg.base) munmap(q->seg.base, q->seg.size);
    if (q->seg.base && q->seg.fd >= 0) close(q->seg.fd);
    if (q->sock >= 0) close(q->sock);
    if (q->evfd >= 0) close(q->evfd);
    if (q->exec_cwd >= 0) close(q->exec_cwd);
    int z = atomic_load(&q->zsock); /* see config.h */
    if (z >= 0) close(z);
  }
}
