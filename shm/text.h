/*
 * text.h — the executable ranges of the loaded objects, which a worker
 * checks a task's function pointer against before it calls it (internal).
 *
 * A task names its function by address (the workers are copies of the
 * parent, so an address means the same code there). The address comes from
 * the shared segment, which a rogue process may overwrite: a worker calls
 * it only if it lies inside a PT_LOAD segment with PF_X of the program or
 * of a library loaded when the pool was created (a bad pointer fails that
 * task with CF_EINVAL; the worker lives on).
 */
#ifndef CF_SHM_TEXT_H
#define CF_SHM_TEXT_H

#include <stdbool.h>
#include <stdint.h>

#define CF__MAX_TEXT_RANGES 128

typedef struct cf__text_range {
  uintptr_t lo, hi;
} cf__text_range;

typedef struct cf__text {
  cf__text_range r[CF__MAX_TEXT_RANGES];
  unsigned n;
} cf__text;

/* Record the executable ranges of every loaded object (the parent, at pool
 * creation; past CF__MAX_TEXT_RANGES the rest are left out). */
void cf__text_collect(cf__text *t);
/* Is fn inside one of the recorded ranges? Any process. */
bool cf__text_contains(const cf__text *t, uintptr_t fn);

#endif /* CF_SHM_TEXT_H */
