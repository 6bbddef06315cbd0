/*
 * stub.c — the MPI executor of a build without MPI (CF_WITH_MPI=OFF): the
 * calls exist, so a program written for the three executors links, and
 * cf_mpi_pool_new says CF_ENOTSUP.
 */
#include <string.h>

#include "cfutures.h"

void cf_mpi_options_init(cf_mpi_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->max_inflight = 1;
}

int cf_mpi_pool_new_ex(const cf_options *o, const cf_mpi_options *mo, cf_executor **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  return CF_ENOTSUP;
}

int cf_mpi_pool_new(const cf_options *o, cf_executor **out) {
  return cf_mpi_pool_new_ex(o, NULL, out);
}
