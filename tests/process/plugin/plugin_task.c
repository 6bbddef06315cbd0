/*
 * plugin_task.c — a loadable module with one task, for test_plugins.c
 * (dlopen'ed under many names, before and after a pool is made). It calls
 * back into the test program (built with exported symbols).
 */
#include "cfutures.h"

void cf_test_plugin_task(cf_call *c) {
  int r = 4242;
  cf_call_return(c, &r, sizeof r);
}
