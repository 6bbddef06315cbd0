#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int cf_test_failures;
static int tests_passed, tests_failed;
static const char *current_test = "(main)";
/* Formatted when armed: the handler only write()s it (async-signal-safe). */
static char watchdog_msg[256];
static volatile sig_atomic_t watchdog_len;

void cf_test_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: expectation failed: %s: ", file, line, expr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  cf_test_failures++;
}

uint64_t cf_test_scale(uint64_t n) {
  const char *s = getenv("CF_TEST_SCALE");
  uint64_t d = s ? strtoull(s, NULL, 10) : 1;
  if (d == 0) d = 1;
  n /= d;
  return n ? n : 1;
}

static bool selected(const char *name) {
  const char *only = getenv("CF_TEST_ONLY");
  if (!only || !*only) return true;
  size_t n = strlen(name);
  for (const char *p = only; *p;) {
    size_t k = strcspn(p, ",");
    if (k == n && strncmp(p, name, n) == 0) return true;
    p += k;
    if (*p) p++;
  }
  return false;
}

static void on_watchdog(int sig) {
  (void)sig;
  ssize_t r = write(STDERR_FILENO, watchdog_msg, (size_t)watchdog_len);
  (void)r;
  _exit(1);
}

/* When this binary started, and what is left of its ctest timeout
 * ($CF_TEST_TIMEOUT, which tests/CMakeLists.txt sets): a watchdog must fire
 * before ctest kills the binary, or the name of the test that hung is
 * lost (a watchdog scaled for a sanitizer used to outlast the timeout). */
static int64_t binary_start_ns;
static int64_t mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
__attribute__((constructor)) static void note_binary_start(void) {
  binary_start_ns = mono_ns();
}
/* Seconds left before 90% of the ctest timeout; 0 if none is known. */
static unsigned timeout_left(void) {
  const char *t = getenv("CF_TEST_TIMEOUT");
  long total = t ? strtol(t, NULL, 10) : 0;
  if (total <= 0) return 0;
  int64_t left = total * 900000000LL - (mono_ns() - binary_start_ns);
  return left < 1000000000 ? 1 : (unsigned)(left / 1000000000);
}

static void arm(unsigned seconds, const char *what) {
  int n = snprintf(watchdog_msg, sizeof watchdog_msg,
                   "WATCHDOG: %s still running after %u s: a hang, caught%s%s\n", current_test,
                   seconds, what && *what ? ": " : "", what ? what : "");
  watchdog_len = n < 0 ? 0 : n >= (int)sizeof watchdog_msg ? (int)sizeof watchdog_msg - 1 : n;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_watchdog;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  alarm(seconds);
}

/* The default watchdog: what is left of the ctest timeout (none outside
 * ctest). */
static void arm_default(void) {
  unsigned left = timeout_left();
  if (left)
    arm(left, "the default watchdog (90% of the ctest timeout)");
  else
    alarm(0);
}

void cf_test_watchdog(unsigned seconds, const char *what) {
  if (seconds == 0) {
    arm_default();
    return;
  }
  unsigned left = timeout_left();
  const char *sc = getenv("CF_TEST_SCALE");
  unsigned long k = sc ? strtoul(sc, NULL, 10) : 1;
  if (k > 1) seconds *= (unsigned)k;
  if (left && seconds > left) seconds = left;
  arm(seconds, what);
}

void cf_test_run(const char *name, void (*fn)(void)) {
  if (!selected(name)) return;
  int before = cf_test_failures;
  current_test = name;
  arm_default(); /* unless the test arms a shorter one: a hang names its test */
  fn();
  alarm(0);
  current_test = "(main)";
  if (cf_test_failures == before) {
    tests_passed++;
  } else {
    tests_failed++;
    fprintf(stderr, "FAILED: %s\n", name);
  }
}

int cf_test_done(const char *name) {
  printf("%s: %d passed, %d failed\n", name, tests_passed, tests_failed);
  return cf_test_failures ? 1 : 0;
}

cf_test_kind cf_test_kind_now = CF_TEST_THREAD;

cf_test_kind cf_test_parse_kind(int argc, char **argv) {
  cf_test_kind_now = CF_TEST_THREAD;
  if (argc > 1 && strcmp(argv[1], "process") == 0) cf_test_kind_now = CF_TEST_PROCESS;
  if (argc > 1 && strcmp(argv[1], "mpi") == 0) cf_test_kind_now = CF_TEST_MPI;
  return cf_test_kind_now;
}

int cf_test_pool_new(bool process, const cf_options *o, cf_executor **ex) {
  if (cf_test_kind_now == CF_TEST_MPI) return cf_mpi_pool_new(o, ex);
  return process ? cf_process_pool_new(o, ex) : cf_thread_pool_new(o, ex);
}

void *cf_test_shm;

static char shared_path[128];
static void shared_unlink(void) {
  unlink(shared_path);
}

/* The "mpi" kind: every rank runs main() up to its pool and maps the same
 * /dev/shm file itself (every rank on this host is a child of the same
 * launcher process). */
static void *shared_mpi(size_t size) {
  void *p = MAP_FAILED;
  const char *exe = strrchr(program_invocation_name, '/');
  snprintf(shared_path, sizeof shared_path, "/dev/shm/cftest.%d.%s", (int)getppid(),
           exe ? exe + 1 : program_invocation_name);
  int fd = open(shared_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0 && ftruncate(fd, (off_t)size) == 0)
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (fd >= 0) close(fd);
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  if (!r) r = getenv("PMI_RANK");
  if (r && strcmp(r, "0") == 0) atexit(shared_unlink);
  return p;
}

/* Attach the region $CF_TEST_SHARED names, at its address: 0, or -1. */
static int shared_attach_env(bool quiet) {
  const char *v = getenv("CF_TEST_SHARED");
  if (!v) return 0; /* the test has none */
  char path[64];
  void *at;
  size_t size;
  int owner = 0;
  if (sscanf(v, "%63[^:]:%p:%zu", path, &at, &size) != 3) return -1;
  if (sscanf(path, "/proc/%d/", &owner) == 1 && owner == (int)getpid()) return 0;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  close(fd);
  if (p != at) { /* the address is taken here: the pool breaks, visibly */
    if (p != MAP_FAILED) munmap(p, size);
    if (!quiet)
      fprintf(stderr, "cf_test_shared_attach: %p is taken in process %d (errno %d)\n", at,
              (int)getpid(), errno);
    return -1;
  }
  cf_test_shm = p;
  return 0;
}

/* An exec-mode zygote is this program started again; this constructor
 * runs before the library's (priority 101 < the default), so the region is
 * there before the zygote forks its first worker, whatever initializer the
 * test's pool has. */
__attribute__((constructor(101))) static void shared_attach_early(void) {
  (void)shared_attach_env(true);
}

/* Where the region goes: an exec-mode zygote maps it at the test's address,
 * so that address must be free in a freshly started process too. An
 * address the kernel picks here lies in this process's mmap area, just
 * below its randomized mmap base; the zygote's base is randomized anew and
 * its libraries, thread stacks and sanitizer runtime land in its own such
 * area, which now and then covers the test's address (CI saw it: "is taken",
 * errno EEXIST, a broken pool, a test waiting forever on a worker that never
 * started). So the region goes far below any mmap base instead: with
 * x86-64's 28 bits of mmap randomness the lowest base is about
 * 0x7eff00000000, and 0x7e9000000000 is 448 GiB below it, inside the range
 * TSan allows for mappings and outside ASan's shadow and allocator. If the
 * hint is taken (a region inherited from a test that started this one), the
 * next hints are tried, then any address. */
#define SHARED_LOW_HINT 0x7e9000000000ull
static void *shared_map_low(int fd, size_t size) {
  uintptr_t step = ((uintptr_t)size + (1ull << 30)) & ~((uintptr_t)(1ull << 30) - 1);
  for (int i = 0; i < 8; i++) {
    void *at = (void *)(uintptr_t)(SHARED_LOW_HINT + (uintptr_t)i * step);
    void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
    if (p == at) return p;
    if (p != MAP_FAILED) munmap(p, size); /* a kernel that ignores the flag */
  }
  fprintf(stderr, "cf_test_shared: no low address free; an exec-mode worker may not attach\n");
  return mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
}

void *cf_test_shared(size_t size) {
  if (cf_test_kind_now == CF_TEST_MPI) {
    void *p = shared_mpi(size);
    assert_true(p != MAP_FAILED);
    cf_test_shm = p;
    return p;
  }
  cf_test_shm = NULL; /* one inherited from a test that started this one stays mapped */
  int fd = memfd_create("cf-test-shared", 0);
  assert_true(fd >= 0);
  assert_true(ftruncate(fd, (off_t)size) == 0);
  void *p = shared_map_low(fd, size);
  assert_true(p != MAP_FAILED);
  char v[128];
  snprintf(v, sizeof v, "/proc/%d/fd/%d:%p:%zu", (int)getpid(), fd, p, size);
  assert_true(setenv("CF_TEST_SHARED", v, 1) == 0);
  cf_test_shm = p;
  return p;
}

int cf_test_shared_attach(void *unused) {
  (void)unused;
  if (cf_test_shm) return 0; /* this process made it, or inherited it */
  return shared_attach_env(false);
}

cf_executor *cf_test_new_executor(bool process, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.initializer = cf_test_shared_attach;
  cf_executor *ex = NULL;
  int rc = cf_test_pool_new(process, &o, &ex);
  assert_rc(rc, 0);
  assert_true(ex != NULL);
  return ex;
}

void cf_test_nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

void cf_test_nap_us(int us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

bool cf_test_within_s(_Atomic int *p, int n, int seconds) {
  int64_t end = mono_ns() + (int64_t)seconds * 1000000000;
  while (atomic_load(p) < n && mono_ns() < end) cf_test_nap_us(200);
  return atomic_load(p) >= n;
}

bool cf_test_within_5s(_Atomic int *p, int n) {
  return cf_test_within_s(p, n, 5);
}

void cf_test_square_task(cf_call *c) {
  size_t n;
  const int *x = cf_call_arg(c, &n);
  int r = n == sizeof(int) ? *x * *x : -1;
  cf_call_return(c, &r, sizeof r);
}

cf_executor *cf_test_process_pool(unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  assert_true(ex != NULL);
  return ex;
}
