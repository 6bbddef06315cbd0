/*
 * map.c — cf_map: a lazy, bounded, ordered map over an executor.
 *
 * DESIGN
 * A cf_map is used by one thread at a time (the caller's); it owns a ring of
 * at most `window` in-flight tasks, submitted in input order. The source is
 * read only to fill a free ring slot, and a slot frees only when every item
 * of its task was returned by cf_map_next, so the source is never more than
 * window x chunk items ahead of the consumer. Results come out in input
 * order: cf_map_next waits (cf__future_wait_until, which helps inside a
 * worker) on the oldest task only.
 *
 * Chunking (chunk > 1): one task carries several items. Its argument is
 *   [u64 fn][u64 count] then per item [u64 len][bytes, padded to 8]
 * and it runs cf__map_chunk_runner(), a plain library function (so it works
 * unchanged in a forked worker process), which runs the user's fn on each
 * item with a nested cf_call whose ops append to a packed result:
 *   [u64 count][u64 flags] then per item [i32 status][i32 code][u64 len]
 *   [bytes, pad 8]
 * status 0: bytes are the result; CF_ETASK: code and bytes (the message,
 * NUL-terminated) come from cf_call_fail; another CF_E*: that error. The
 * runner returns the packed buffer with cf_call_return on the outer call.
 * Every length read back is checked against the buffer (a process worker's
 * output is untrusted).
 *
 * Sizes. A chunk fits the executor's limits instead of failing as a whole:
 *   - the argument: items are packed while the chunk stays within
 *     max_arg (ex->vt->max_arg); the item that does not fit waits (copied:
 *     the source's bytes live only until its next call) and starts the next
 *     chunk; an item too large even alone goes in a chunk of its own, which
 *     fails with CF_E2BIG for that item only;
 *   - the result: the runner stops before an item whose result, judged by
 *     the largest one of the chunk so far, would not fit max_result, and
 *     says so (flags SPLIT): the map submits the items left as a new task
 *     in the same place of its window, so results still come in order and
 *     every item runs once. An item whose result alone does not fit the
 *     chunk's remaining room (a result much larger than those before it)
 *     fails with CF_E2BIG: it ran, and its result could not be carried.
 * A packed result shorter than its count without SPLIT (the runner stopped
 * because stop was requested) reports CF_ECANCELLED for the missing items.
 */
#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "executor.h"
#include "future.h"
#include "sys.h"

#define MAX_WINDOW ((size_t)1 << 16) /* ring slots allocated at most */

static size_t pad8(size_t n) {
  return (n + 7) & ~(size_t)7;
}

/* ---- the chunk runner (runs in a worker thread or process) ------------- */

typedef struct packbuf {
  unsigned char *p;
  size_t len, cap;
  bool oom;
  bool borrowed; /* p is a caller's buffer (the runner's stack): never freed */
} packbuf;

static bool pb_reserve(packbuf *b, size_t more) {
  if (b->oom) return false;
  if (more > SIZE_MAX / 2 - b->len) {
    b->oom = true;
    return false;
  }
  if (b->len + more <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more) cap *= 2;
  unsigned char *p = b->borrowed ? malloc(cap) : realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  if (b->borrowed && b->len) memcpy(p, b->p, b->len);
  b->borrowed = false;
  b->p = p;
  b->cap = cap;
  return true;
}

static void pb_free(packbuf *b) {
  if (!b->borrowed) free(b->p);
  b->p = NULL;
  b->cap = b->len = 0;
}

/* Append len bytes (may be NULL: zeros) padded to 8. */
static bool pb_put(packbuf *b, const void *v, size_t len) {
  size_t n = pad8(len);
  if (n < len || !pb_reserve(b, n)) return false;
  if (len) {
    if (v)
      memcpy(b->p + b->len, v, len);
    else
      memset(b->p + b->len, 0, len);
  }
  memset(b->p + b->len + len, 0, n - len);
  b->len += n;
  return true;
}

typedef struct rec_hdr {
  int32_t status;
  int32_t code;
  uint64_t len;
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == 16, "packed record header");

typedef struct inner_ctx {
  packbuf *out;
  cf_call *outer;
  size_t rec; /* offset of this item's rec_hdr in out */
} inner_ctx;

static rec_hdr *rec_at(inner_ctx *x) {
  return (rec_hdr *)(x->out->p + x->rec);
}

static int inner_ret(cf_call *c, const void *v, size_t len) {
  inner_ctx *x = c->ctx;
  int rc = cf__call_record_return(c, v, len);
  if (rc == CF_E2BIG) rec_at(x)->status = CF_E2BIG;
  if (rc != 0) return rc;
  if (!pb_put(x->out, v, len)) return cf__call_record_error(c, CF_ENOMEM); /* fails the chunk */
  rec_at(x)->len = len;
  return 0;
}

static int inner_fail(cf_call *c, int code, const char *msg) {
  inner_ctx *x = c->ctx;
  if (cf__call_record_fail(c) != 0) return CF_EINVAL;
  size_t n = msg ? strnlen(msg, CF_MESSAGE_MAX - 1) : 0;
  if (msg) {
    size_t room = pad8(n + 1);
    if (!pb_reserve(x->out, room)) return CF_ENOMEM;
    memset(x->out->p + x->out->len, 0, room);
    memcpy(x->out->p + x->out->len, msg, n);
    x->out->len += room;
  }
  rec_at(x)->status = CF_ETASK;
  rec_at(x)->code = code;
  rec_at(x)->len = msg ? n + 1 : 0;
  return 0;
}

static bool inner_stop(cf_call *c) {
  inner_ctx *x = c->ctx;
  return cf_call_stop_requested(x->outer);
}

static const cf__call_ops inner_ops = {inner_ret, inner_fail, inner_stop, NULL};

#define CHUNK_SPLIT 1u /* packed result flag: items are left, submit them again */
#define CHUNK_HDR 16   /* [u64 count][u64 flags] */
#define CHUNK_REC 16   /* sizeof(rec_hdr) */

void cf__map_chunk_runner(cf_call *outer) {
  size_t alen;
  const unsigned char *a = cf_call_arg(outer, &alen);
  uint64_t fnbits, count;
  if (alen < 16) {
    cf_call_fail(outer, CF_EPROTO, "map chunk: bad argument");
    return;
  }
  memcpy(&fnbits, a, 8);
  memcpy(&count, a + 8, 8);
  cf_fn fn = cf__call_fn(outer, fnbits); /* an exec'ed worker's own address */
  if (!fn) {
    cf_call_fail(outer, CF_EINVAL, "map chunk: not a function of the program");
    return;
  }
  /* Results of a small chunk stay on the stack: no allocation per chunk. */
  unsigned char stackbuf[2048] __attribute__((aligned(16)));
  packbuf out = {.p = stackbuf, .len = 0, .cap = sizeof stackbuf, .oom = false, .borrowed = true};
  uint64_t hdr[2] = {count, 0};
  if (!pb_put(&out, hdr, sizeof hdr)) goto oom;
  size_t pos = 16;
  uint64_t done = 0, flags = 0;
  size_t largest = 0; /* the largest record of this chunk so far */
  for (; done < count; done++) {
    if (cf_call_stop_requested(outer)) break;
    if (done > 0 && out.len + CHUNK_REC + largest > outer->max_result) {
      flags = CHUNK_SPLIT; /* the rest goes in another task (DESIGN: sizes) */
      break;
    }
    uint64_t ilen;
    if (alen - pos < 8) break;
    memcpy(&ilen, a + pos, 8);
    pos += 8;
    if (ilen > alen - pos) break;
    const void *item = a + pos;
    pos += pad8(ilen) <= alen - pos ? pad8(ilen) : alen - pos;
    rec_hdr h = {0, 0, 0};
    size_t rec = out.len;
    if (!pb_put(&out, &h, sizeof h)) goto oom;
    inner_ctx x = {&out, outer, rec};
    cf_call inner = {.ops = &inner_ops,
                     .arg = item,
                     .arg_len = ilen,
                     .ctx = &x,
                     .max_result = outer->max_result,
                     .outcome = CF__OUTCOME_NONE};
    fn(&inner);
    if (out.oom) goto oom;
    if (out.len > outer->max_result) {
      /* its result does not fit what is left: it ran, it fails alone */
      out.len = rec + CHUNK_REC;
      rec_at(&x)->status = CF_E2BIG;
      rec_at(&x)->code = 0;
      rec_at(&x)->len = 0;
      done++;
      if (done < count) flags = CHUNK_SPLIT;
      break;
    }
    if (out.len - rec > largest) largest = out.len - rec;
  }
  hdr[0] = done; /* the count actually produced */
  hdr[1] = flags;
  memcpy(out.p, hdr, sizeof hdr);
  cf_call_return(outer, out.p, out.len);
  pb_free(&out);
  return;
oom:
  pb_free(&out);
  cf_call_fail(outer, CF_ENOMEM, "map chunk: out of memory");
}

/* ---- the map (the caller's thread) ---------------------------------------- */

typedef struct slot {
  cf_future *f; /* NULL: submission failed with err */
  int err;
  size_t count;       /* items carried */
  unsigned char *arg; /* chunked: the task's packed argument (to submit the rest again) */
  size_t arg_len, arg_cap;
} slot;

typedef struct array_src {
  const unsigned char *base;
  size_t count, size, next;
} array_src;

struct cf_map {
  _Atomic bool busy; /* debug builds: inside cf_map_next (one thread at a time) */
  cf_executor *ex;
  cf_fn fn;
  cf_map_source src;
  void *src_arg;
  size_t window, chunk;
  int64_t deadline;
  slot *ring;
  size_t head, inflight; /* ring[head] is the oldest */
  bool eof;
  int src_err; /* a negative source code, reported after the items before it */
  /* the oldest task's results, once done */
  bool loaded;
  int head_rc;      /* the task's failure for all its items, or 0 */
  size_t item;      /* items of the oldest task already returned */
  size_t pos;       /* chunked: offset of the next record in res */
  size_t res_items; /* chunked: records present in res */
  unsigned char *res;
  size_t res_cap, res_len;
  size_t max_arg;       /* the executor's argument limit (SIZE_MAX: none) */
  unsigned char *carry; /* chunked: an item read that did not fit the last chunk */
  size_t carry_len, carry_cap;
  bool has_carry;
  bool res_split; /* chunked: the oldest task left items for another (CHUNK_SPLIT) */
  int last_err, last_code;
  char last_msg[CF_MESSAGE_MAX];
  array_src arr;
  int pid; /* the executor's owner_pid (executor.h), read at creation */
};

/* The map was copied into a fork of the process that owns its executor. */
static bool map_foreign(const cf_map *m) {
  return m->pid && m->pid != cf__self_pid();
}

static int array_next(void *arg, const void **item, size_t *len) {
  array_src *a = arg;
  if (a->next >= a->count) return 0;
  *item = a->base + a->next * a->size;
  *len = a->size;
  a->next++;
  return 1;
}

/* Read up to one task's worth of items and submit it into a free slot.
 * Returns false when nothing was submitted (end or error of the source). */
static bool submit_one(cf_map *m) {
  slot *s = &m->ring[(m->head + m->inflight) % m->window];
  s->f = NULL;
  s->err = 0;
  s->count = 0;
  if (m->chunk <= 1) {
    const void *item = NULL;
    size_t len = 0;
    int r = m->src(m->src_arg, &item, &len);
    if (r <= 0) {
      m->eof = true;
      if (r < 0) m->src_err = r;
      return false;
    }
    s->count = 1;
    int rc = cf_submit(m->ex, m->fn, item, len, &s->f);
    if (rc != 0) {
      s->f = NULL;
      s->err = rc;
    }
    m->inflight++;
    return true;
  }
  packbuf b = {.p = s->arg, .len = 0, .cap = s->arg_cap, .oom = false, .borrowed = false};
  uint64_t hdr[2] = {(uint64_t)(uintptr_t)m->fn, 0};
  pb_put(&b, hdr, sizeof hdr);
  size_t n = 0;
  while (n < m->chunk) {
    const void *item = NULL;
    size_t len = 0;
    if (m->has_carry) {
      item = m->carry;
      len = m->carry_len;
    } else if (m->eof) {
      break;
    } else {
      int r = m->src(m->src_arg, &item, &len);
      if (r <= 0) {
        m->eof = true;
        if (r < 0) m->src_err = r;
        break;
      }
    }
    if (n > 0 && (b.len + 8 + pad8(len) < b.len || b.len + 8 + pad8(len) > m->max_arg)) {
      /* does not fit this chunk: it starts the next one (DESIGN: sizes) */
      if (!m->has_carry) {
        if (len > m->carry_cap) {
          unsigned char *c = realloc(m->carry, len);
          if (!c) {
            b.oom = true;
            break;
          }
          m->carry = c;
          m->carry_cap = len;
        }
        if (len) memcpy(m->carry, item, len);
        m->carry_len = len;
        m->has_carry = true;
      }
      break;
    }
    uint64_t l = len;
    pb_put(&b, &l, 8);
    pb_put(&b, item, len);
    m->has_carry = false;
    n++;
  }
  s->arg = b.p;
  s->arg_cap = b.cap;
  if (n == 0 && !b.oom) return false;
  s->count = n;
  int rc;
  if (b.oom) {
    rc = CF_ENOMEM;
    if (n == 0) s->count = 1; /* the item that could not be kept fails */
  } else {
    uint64_t cnt = n;
    memcpy(b.p + 8, &cnt, 8);
    s->arg_len = b.len;
    rc = cf_submit(m->ex, cf__map_chunk_runner, b.p, b.len, &s->f);
  }
  if (rc != 0) {
    s->f = NULL;
    s->err = rc;
  }
  m->inflight++;
  return true;
}

/* The oldest task's runner left items (CHUNK_SPLIT): submit them, as a new
 * task in the same place of the window. */
static void resubmit_rest(cf_map *m) {
  slot *s = &m->ring[m->head];
  size_t done = m->res_items, pos = 16;
  for (size_t k = 0; k < done; k++) { /* skip what ran (our own packing: trusted) */
    uint64_t l;
    memcpy(&l, s->arg + pos, 8);
    pos += 8 + pad8((size_t)l);
  }
  size_t rest = s->count - done;
  memmove(s->arg + 16, s->arg + pos, s->arg_len - pos);
  s->arg_len = 16 + (s->arg_len - pos);
  uint64_t cnt = rest;
  memcpy(s->arg + 8, &cnt, 8);
  cf_future_release(s->f);
  s->f = NULL;
  s->count = rest;
  s->err = cf_submit(m->ex, cf__map_chunk_runner, s->arg, s->arg_len, &s->f);
  if (s->err) s->f = NULL;
  m->loaded = false;
  m->item = 0;
}

static void refill(cf_map *m) {
  while ((!m->eof || m->has_carry) && m->inflight < m->window)
    if (!submit_one(m)) break;
}

static int map_start(cf_executor *ex, cf_fn fn, cf_map_source src, void *src_arg,
                     const cf_map_opts *o, const array_src *arr, cf_map **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  if (!ex || ex->magic != CF__EXECUTOR_MAGIC || !fn || !src) return CF_EINVAL;
  int e = cf__executor_foreign(ex);
  if (e) return e;
  size_t window = o ? o->window : 0;
  if (window == 0) {
    unsigned w = ex->vt->workers(ex);
    window = 2 * (size_t)(w ? w : 1);
  }
  if (window > MAX_WINDOW) window = MAX_WINDOW;
  size_t chunk = o && o->chunk > 1 ? o->chunk : 1;
  size_t max_arg = ex->vt->max_arg ? ex->vt->max_arg(ex) : SIZE_MAX;
  cf_map *m = calloc(1, sizeof *m);
  if (!m) return CF_ENOMEM;
  m->ring = calloc(window, sizeof *m->ring);
  if (!m->ring) {
    free(m);
    return CF_ENOMEM;
  }
  m->ex = ex;
  m->pid = ex->owner_pid;
  m->fn = fn;
  m->window = window;
  m->chunk = chunk;
  m->max_arg = max_arg;
  m->deadline = o ? cf__deadline_after(o->timeout_ns) : -1;
  if (arr) {
    m->arr = *arr;
    m->src = array_next;
    m->src_arg = &m->arr;
  } else {
    m->src = src;
    m->src_arg = src_arg;
  }
  refill(m);
  /* An executor that takes nothing fails the map at once, like Python. */
  if (m->inflight > 0 && !m->ring[m->head].f &&
      (m->ring[m->head].err == CF_ESHUTDOWN || m->ring[m->head].err == CF_EBROKEN)) {
    int rc = m->ring[m->head].err;
    cf_map_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int cf_map_new(cf_executor *ex, cf_fn fn, cf_map_source src, void *src_arg, const cf_map_opts *o,
               cf_map **out) {
  return map_start(ex, fn, src, src_arg, o, NULL, out);
}

int cf_map_array(cf_executor *ex, cf_fn fn, const void *base, size_t count, size_t item_size,
                 const cf_map_opts *o, cf_map **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  if (count > 0 && item_size > 0 && !base) return CF_EINVAL;
  if (item_size > 0 && count > SIZE_MAX / item_size) return CF_EINVAL;
  array_src a = {base, count, item_size, 0};
  return map_start(ex, fn, array_next, NULL, o, &a, out);
}

/* Remember a failed item's code and message for cf_map_error(). */
static void set_error(cf_map *m, int err, int code, const char *msg, size_t msglen) {
  m->last_err = err;
  m->last_code = code;
  if (msglen >= CF_MESSAGE_MAX) msglen = CF_MESSAGE_MAX - 1;
  if (msg && msglen) memcpy(m->last_msg, msg, msglen);
  m->last_msg[msg ? msglen : 0] = 0;
}

static void error_from_future(cf_map *m, int rc) {
  int code = rc;
  char msg[CF_MESSAGE_MAX] = {0};
  if (m->ring[m->head].f && cf_future_error(m->ring[m->head].f, &code, msg, sizeof msg) != 0)
    code = rc;
  if (rc != CF_ETASK) code = rc;
  set_error(m, rc, code, msg, strlen(msg));
}

/* The oldest task is used up: drop it and submit the next. */
static void advance(cf_map *m) {
  slot *s = &m->ring[m->head];
  if (s->f) cf_future_release(s->f);
  s->f = NULL;
  m->head = (m->head + 1) % m->window;
  m->inflight--;
  m->loaded = false;
  m->item = 0;
  refill(m);
}

static int copy_out(const void *v, size_t n, void *out, size_t cap, size_t *len) {
  if (len) *len = n;
  if (n > cap) return CF_ERANGE;
  if (n) memcpy(out, v, n);
  return 0;
}

/* Load the oldest (done) chunked task's packed result into m->res. */
static void load_chunk(cf_map *m) {
  slot *s = &m->ring[m->head];
  m->loaded = true;
  m->head_rc = 0;
  m->pos = 16;
  m->res_items = 0;
  m->res_split = false;
  size_t need = 0;
  int rc = cf_future_result(s->f, m->res, m->res_cap, &need, 0);
  if (rc == 0 && need > m->res_cap) rc = CF_ERANGE; /* no buffer yet: a success check */
  if (rc == CF_ERANGE) {
    unsigned char *p = realloc(m->res, need);
    if (!p) {
      m->head_rc = CF_ENOMEM;
      return;
    }
    m->res = p;
    m->res_cap = need;
    rc = cf_future_result(s->f, m->res, m->res_cap, &need, 0);
  }
  if (rc != 0) {
    m->head_rc = rc;
    error_from_future(m, rc);
    return;
  }
  m->res_len = need;
  uint64_t hdr[2] = {0, 0};
  if (need >= sizeof hdr) memcpy(hdr, m->res, sizeof hdr);
  m->res_items = hdr[0] < s->count ? (size_t)hdr[0] : s->count;
  m->res_split = (hdr[1] & CHUNK_SPLIT) && m->res_items < s->count && m->res_items > 0;
}

static int map_next(cf_map *m, void *out, size_t cap, size_t *len) {
  if (m->inflight == 0) {
    if (m->src_err) {
      int rc = m->src_err;
      m->src_err = 0;
      return rc;
    }
    return CF_EDONE;
  }
  slot *s = &m->ring[m->head];
  if (!s->f) { /* submission failed: every item reports it */
    int rc = s->err;
    set_error(m, rc, rc, NULL, 0);
    if (++m->item >= s->count) advance(m);
    return rc;
  }
  if (cf__future_wait_until(s->f, m->deadline) != 0) return CF_ETIMEDOUT;
  if (m->chunk <= 1) {
    int rc = cf_future_result(s->f, out, cap, len, 0);
    if (rc == CF_ERANGE) return rc; /* not consumed: call again with room */
    if (rc != 0) error_from_future(m, rc);
    advance(m);
    return rc;
  }
  if (!m->loaded) load_chunk(m);
  if (!m->head_rc && m->item >= m->res_items && m->res_split) {
    resubmit_rest(m); /* the items it left run as a task of their own */
    return map_next(m, out, cap, len);
  }
  int rc;
  bool consume = true;
  if (m->head_rc) {
    rc = m->head_rc;
  } else if (m->item >= m->res_items) {
    rc = CF_ECANCELLED; /* the runner stopped before this item */
    set_error(m, rc, rc, NULL, 0);
  } else {
    rec_hdr h;
    size_t avail = m->res_len - m->pos;
    if (avail < sizeof h) {
      rc = CF_EPROTO;
      set_error(m, rc, rc, NULL, 0);
    } else {
      memcpy(&h, m->res + m->pos, sizeof h);
      if (h.len > avail - sizeof h) {
        rc = CF_EPROTO;
        set_error(m, rc, rc, NULL, 0);
        m->res_items = m->item; /* the rest is unreadable */
      } else {
        const unsigned char *bytes = m->res + m->pos + sizeof h;
        if (h.status == 0) {
          rc = copy_out(bytes, (size_t)h.len, out, cap, len);
          if (rc == CF_ERANGE) consume = false;
        } else if (h.status == CF_ETASK) {
          rc = CF_ETASK;
          size_t ml = h.len ? strnlen((const char *)bytes, (size_t)h.len) : 0;
          set_error(m, rc, h.code, (const char *)bytes, ml);
        } else {
          /* an error of the item itself (CF_E2BIG ...), or garbage */
          rc = h.status < 0 && h.status >= CF_ESYS ? h.status : CF_EPROTO;
          set_error(m, rc, rc, NULL, 0);
        }
        if (consume) {
          size_t step = sizeof h + pad8((size_t)h.len);
          m->pos += step <= avail ? step : avail;
        }
      }
    }
  }
  if (!consume) return rc;
  if (++m->item >= s->count) advance(m);
  return rc;
}

int cf_map_next(cf_map *m, void *out, size_t cap, size_t *len) {
  if (!m || (cap > 0 && !out)) return CF_EINVAL;
  if (map_foreign(m)) return CF_EFORKED;
  cf__debug_enter(&m->busy);
  int rc = map_next(m, out, cap, len);
  cf__debug_leave(&m->busy);
  return rc;
}

int cf_map_error(cf_map *m, int *code, char *message, size_t cap) {
  if (!m || !m->last_err) return CF_EINVAL;
  if (code) *code = m->last_code;
  if (message && cap) {
    size_t n = strnlen(m->last_msg, sizeof m->last_msg);
    if (n >= cap) n = cap - 1;
    memcpy(message, m->last_msg, n);
    message[n] = 0;
  }
  return 0;
}

void cf_map_free(cf_map *m) {
  if (!m) return;
  if (map_foreign(m)) return; /* a fork's copy: the tasks are the parent's */
  cf__assert(!atomic_load_explicit(&m->busy, memory_order_relaxed)); /* not inside cf_map_next */
  for (size_t i = 0; i < m->inflight; i++) {
    slot *s = &m->ring[(m->head + i) % m->window];
    if (!s->f) continue;
    /* A queued task is cancelled; a running one is asked to stop, never
     * killed (cf_future_cancel would kill a process task): the chunk runner
     * stops between items, a task that ignores it finishes in the
     * background. Either way the future frees itself once done and
     * released (future.h: Lifetime), so the map returns at once. */
    if (!cf__future_transition(s->f, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED))
      cf__future_request_stop(s->f);
    cf_future_release(s->f);
  }
  for (size_t i = 0; i < m->window; i++) free(m->ring[i].arg);
  free(m->ring);
  free(m->res);
  free(m->carry);
  free(m);
}
