/*
 * options.c — cf_options_init, the one options loader both pools use, and
 * the pinning and naming of a starting worker (DESIGN in options.h).
 */
#include "options.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

_Static_assert(CF__OPTIONS_SIZE_V0 == offsetof(cf_options, wait_help),
               "fields added to cf_options go after the first version's (CF__OPTIONS_SIZE_V0)");
_Static_assert(CF__MAX_WORKERS <= 999, "worker names keep at most 3 digits");
_Static_assert(CF__NAME_PREFIX_MAX + 4 < CF__NAME_SIZE, "worker names fit the comm limit");

void cf_options_init(cf_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->max_arg_size = CF__DEFAULT_MAX_ARG;
  o->max_result_size = CF__DEFAULT_MAX_RESULT;
  o->ring_capacity = CF__DEFAULT_RING;
  o->max_futures = CF__DEFAULT_MAX_FUTURES;
}

unsigned cf__online_cpus(void) {
  cpu_set_t set;
  long n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n <= 0) n = 1;
  return n > CF__MAX_WORKERS ? CF__MAX_WORKERS : (unsigned)n;
}

/* The caller's struct as far as its size goes, in a zeroed copy of ours. */
static void read_user(const cf_options *user, cf_options *u) {
  memset(u, 0, sizeof *u);
  if (!user) return;
  size_t n = user->size ? user->size : CF__OPTIONS_SIZE_V0;
  if (n > sizeof *u) n = sizeof *u;
  memcpy(u, user, n);
  /* a field that the size cuts through is not there either */
#define KEEP_IF_COVERED(f) \
  if (offsetof(cf_options, f) + sizeof u->f > n) memset(&u->f, 0, sizeof u->f)
  KEEP_IF_COVERED(workers);
  KEEP_IF_COVERED(name);
  KEEP_IF_COVERED(initializer);
  KEEP_IF_COVERED(initializer_arg);
  KEEP_IF_COVERED(pin_cpus);
  KEEP_IF_COVERED(max_queued);
  KEEP_IF_COVERED(max_tasks_per_worker);
  KEEP_IF_COVERED(max_arg_size);
  KEEP_IF_COVERED(max_result_size);
  KEEP_IF_COVERED(ring_capacity);
  KEEP_IF_COVERED(max_futures);
  KEEP_IF_COVERED(wait_help);
  KEEP_IF_COVERED(start_mode);
#undef KEEP_IF_COVERED
}

static size_t or_default(size_t v, size_t def) {
  return v ? v : def;
}

int cf__options_load(const cf_options *user, cf__options *out) {
  cf_options u;
  read_user(user, &u);
  memset(out, 0, sizeof *out);

  out->workers = u.workers ? u.workers : cf__online_cpus();
  const char *prefix = u.name && u.name[0] ? u.name : CF__DEFAULT_NAME;
  size_t len = strnlen(prefix, CF__NAME_PREFIX_MAX);
  memcpy(out->name, prefix, len);
  out->name[len] = 0;
  out->initializer = u.initializer;
  out->initializer_arg = u.initializer_arg;
  out->pin_cpus = u.pin_cpus;
  out->max_queued = u.max_queued;
  out->max_tasks_per_worker = u.max_tasks_per_worker;
  out->max_arg_size = or_default(u.max_arg_size, CF__DEFAULT_MAX_ARG);
  out->max_result_size = or_default(u.max_result_size, CF__DEFAULT_MAX_RESULT);
  out->ring_capacity = or_default(u.ring_capacity, CF__DEFAULT_RING);
  out->max_futures = u.max_futures; /* 0: derived by the process pool */
  out->wait_help = u.wait_help;
  out->start_mode = u.start_mode ? u.start_mode : CF_START_EXEC;

  size_t ring = out->ring_capacity;
  if (out->workers > CF__MAX_WORKERS || ring < 2 || (ring & (ring - 1)) || ring > CF__MAX_RING ||
      out->max_futures > CF__MAX_FUTURES || out->max_arg_size > CF__MAX_ARG_RESULT ||
      out->max_result_size > CF__MAX_ARG_RESULT || out->wait_help > CF_HELP_NONE ||
      out->start_mode > CF_START_FORK)
    return CF_EINVAL;

  if (out->pin_cpus && sched_getaffinity(0, sizeof out->cpus.set, &out->cpus.set) == 0) {
    int n = CPU_COUNT(&out->cpus.set);
    out->cpus.count = n > 0 ? (unsigned)n : 0;
  }
  return 0;
}

void cf__worker_pin_self(const cf__cpumask *cpus, unsigned i) {
  if (cpus->count == 0) return;
  unsigned want = i % cpus->count, seen = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &cpus->set)) continue;
    if (seen++ == want) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      (void)sched_setaffinity(0, sizeof one, &one); /* 0: the calling thread */
      return;
    }
  }
}

void cf__worker_name(const char *prefix, unsigned i, char *out) {
  snprintf(out, CF__NAME_SIZE, "%.*s-%u", CF__NAME_PREFIX_MAX, prefix, i);
}

void cf__worker_name_self(const char *prefix, unsigned i) {
  char name[CF__NAME_SIZE];
  cf__worker_name(prefix, i, name);
  (void)prctl(PR_SET_NAME, name, 0, 0, 0); /* the calling thread */
}
