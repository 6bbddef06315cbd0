/*
 * image.h — where a task's function lives, as (loaded module, offset): how
 * an exec'ed worker finds the parent's function pointers in its own
 * address space (internal).
 *
 * DESIGN
 * An exec'ed zygote (exec.c) runs the same program file as the parent, but
 * ASLR loads it and its libraries at other addresses. The parent records,
 * at pool creation, every loaded module (dl_iterate_phdr: its name, load
 * bias, and its executable PT_LOAD segments); the zygote receives that
 * record and resolves it against its own modules (cf__image_resolve): a
 * module of the same name whose executable segments have the same virtual
 * addresses and sizes gives each of the parent's ranges a delta (the
 * zygote's bias minus the parent's). A library the parent had dlopen()ed
 * is dlopen()ed by path in the zygote first. A module that does not match
 * (another file under that name, a library that cannot be loaded) keeps no
 * range: its functions fail their task with CF_EINVAL, as an address
 * outside the program's code does.
 *
 * A worker translates the pointer it reads from a slot (untrusted: a rogue
 * process may have written it) with cf__image_translate: only an address
 * inside one of the parent's resolved executable ranges is called, at the
 * same offset in the zygote's copy of that module.
 *
 * Fork mode needs none of this: the workers are copies of the parent, and
 * text.h checks the address as it is.
 */
#ifndef CF_SHM_IMAGE_H
#define CF_SHM_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

/* Sized for a program with a few hundred plugins; the record travels in
 * one message (about 60 KiB, within a Unix socket's default buffer). */
#define CF__IMAGE_MAX_MODS 512
#define CF__IMAGE_MAX_RANGES 1024
#define CF__IMAGE_NAMES 32768 /* bytes of module names, NUL-terminated each */

typedef struct cf__image_range {
  uint64_t lo, hi; /* executable bytes [lo, hi) in the parent */
  int64_t delta;   /* add to a parent address: the same byte in this process */
  uint32_t mod;    /* index into mods */
  uint32_t ok;     /* resolved (always 1 in the parent) */
} cf__image_range;

typedef struct cf__image_mod {
  uint64_t bias;     /* the parent's load bias (dlpi_addr) */
  uint32_t name_off; /* its name in names[] ("" for the main program) */
  uint32_t pad_;
} cf__image_mod;

/* Plain bytes (no pointers): sent as they are over the zygote socket. */
typedef struct cf__image {
  uint32_t nmods, nranges, names_len;
  uint32_t truncated; /* modules were left out (the limits above) */
  cf__image_mod mods[CF__IMAGE_MAX_MODS];
  cf__image_range r[CF__IMAGE_MAX_RANGES];
  char names[CF__IMAGE_NAMES];
} cf__image;

/* The parent, at pool creation: record the loaded modules (those past the
 * limits are left out, `truncated` says so: submit then refuses their
 * functions with CF_ENOTLOADED). */
void cf__image_collect(cf__image *im);
/* The exec'ed zygote, once: resolve the parent's record against this
 * process (dlopen()ing what is missing). How many ranges resolved. */
unsigned cf__image_resolve(cf__image *im);
/* Any process holding a resolved image: the address in this process of
 * the parent's code address `a`, or 0 if `a` is not inside a resolved
 * executable range. */
uintptr_t cf__image_translate(const cf__image *im, uint64_t a);
/* Is `a` (an address in this process) in the main program's own code? The
 * parent, before choosing exec mode: an exec of the program file brings
 * up the library's constructor only if the library is linked into it. */
bool cf__image_in_main_program(uintptr_t a);
/* ... or in a shared library that the program loads at start (a DT_NEEDED
 * of the main program, or of one of those, transitively): its constructor
 * then runs in the exec'ed program too. Not one dlopen()ed later. */
bool cf__image_loaded_at_start(uintptr_t a);

#endif /* CF_SHM_IMAGE_H */
