/*
 * fnref.h — code and data addresses that travel between ranks (internal).
 *
 * DESIGN
 * Every rank runs the same executable, but ASLR loads each module (the
 * program, each shared library) at its own address in each process. So an
 * address travels as (module index in the sender's table, offset from that
 * module's load address). At pool creation rank 0 sends its table (one
 * cf__modrec per module: a hash of its path, its build-id, its extent) and
 * each worker maps rank 0's indices to its own modules by build-id (path
 * and extent when a module has none); a module that does not match maps to
 * nothing, and an address in it is refused on arrival. A code address is
 * also checked on arrival: the offset must lie in an executable segment of
 * the matched module, and the first code bytes there must equal the ones
 * rank 0 saw (a different build of the same path fails the task, not the
 * rank). The table is taken once (at the first pool): a function in a
 * library dlopen()ed later is in no known module, and submit refuses it
 * with CF_ENOTLOADED.
 */
#ifndef CF_MPI_FNREF_H
#define CF_MPI_FNREF_H

#include <stdbool.h>
#include <stdint.h>

#define CF__MPI_MAX_MODS 256
#define CF__MPI_MAX_XRANGES 4

typedef struct cf__mod {
  uintptr_t base;                                               /* dlpi_addr */
  uintptr_t lo, hi;                                             /* extent of all PT_LOAD segments */
  uintptr_t xlo[CF__MPI_MAX_XRANGES], xhi[CF__MPI_MAX_XRANGES]; /* executable ones */
  unsigned nx;
  uint64_t name_hash;
  uint32_t id_len;
  uint8_t id[32]; /* NT_GNU_BUILD_ID */
} cf__mod;

typedef struct cf__modtab {
  cf__mod m[CF__MPI_MAX_MODS];
  unsigned n;
} cf__modtab;

/* What rank 0 sends about one of its modules (wire format). */
typedef struct cf__modrec {
  uint64_t name_hash;
  uint64_t span; /* hi - lo */
  uint32_t id_len;
  uint32_t pad;
  uint8_t id[32];
} cf__modrec;
_Static_assert(sizeof(cf__modrec) == 56, "cf__modrec: wire size");

/* An address on the wire. */
typedef struct cf__fnref {
  uint64_t off;
  uint64_t check; /* code addresses: the first bytes of the code */
  uint16_t mod;
} cf__fnref;

/* Take the table of the modules loaded now (any thread; dl_iterate_phdr). */
void cf__modtab_build(cf__modtab *t);
void cf__modtab_records(const cf__modtab *t, cf__modrec *out);

/* Rank 0: the reference of a code address (exec = true: in an executable
 * segment; fills check) or a data address (any loaded segment). 0 or
 * CF_ENOTLOADED. */
int cf__addr_encode(const cf__modtab *t, uintptr_t addr, bool exec, cf__fnref *out);

/* Worker: map[i] = the local index of rank 0's module i, or -1. */
void cf__modmap_build(const cf__modtab *local, const cf__modrec *remote, unsigned n, int16_t *map);

/* Worker: the local address of a reference, or 0 when it is refused (no
 * such module here, outside it, not code, or the code differs). */
uintptr_t cf__addr_decode(const cf__modtab *local, const int16_t *map, unsigned nmap,
                          const cf__fnref *r, bool exec);

/* Rank 0: the check bytes of the code at a packed reference (0 if none). */
uint64_t cf__fnref_check_packed(const cf__modtab *t, uint64_t packed);

/* The 8-byte form of a code reference inside a map chunk's argument:
 * module in the top 16 bits, offset below. */
static inline uint64_t cf__fnref_pack(const cf__fnref *r) {
  return ((uint64_t)r->mod << 48) | (r->off & ((1ull << 48) - 1));
}
static inline void cf__fnref_unpack(uint64_t v, uint64_t check, cf__fnref *r) {
  r->mod = (uint16_t)(v >> 48);
  r->off = v & ((1ull << 48) - 1);
  r->check = check;
}

#endif /* CF_MPI_FNREF_H */
