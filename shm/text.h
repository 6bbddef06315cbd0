/*
 * text.h — the executable ranges of the loaded objects: where a task's
 * function may be (internal).
 *
 * A task names its function by address (the workers are copies of the
 * parent, so an address means the same code there — but only for code
 * loaded when the pool was created: the zygote was forked then). The
 * parent checks the address at submit (CF_ENOTLOADED: a library dlopen'ed
 * later, or no code at all), and the worker again before it calls it,
 * because the address comes from the shared segment, which a rogue process
 * may overwrite (a bad pointer fails that task with CF_EINVAL; the worker
 * lives on). The ranges are the PT_LOAD segments with PF_X of every object
 * dl_iterate_phdr lists, sorted, in memory the parent allocates once: the
 * workers read their fork's copy.
 */
#ifndef CF_SHM_TEXT_H
#define CF_SHM_TEXT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cf__text_range {
  uintptr_t lo, hi;
} cf__text_range;

typedef struct cf__text {
  cf__text_range *r; /* sorted by lo, not overlapping */
  unsigned n;
  _Atomic unsigned last; /* the range found last: looked at first */
} cf__text;

/* Record the executable ranges of every loaded object (the parent, at pool
 * creation): 0 or CF_ENOMEM. */
int cf__text_collect(cf__text *t);
void cf__text_free(cf__text *t);
/* Is fn inside one of the recorded ranges? Any process. */
bool cf__text_contains(const cf__text *t, uintptr_t fn);

#endif /* CF_SHM_TEXT_H */
