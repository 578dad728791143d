/* Parser for /proc/<pid>/maps, smaps and smaps_rollup text (one pass, no allocation).
 *
 * Output is columnar (one array per field, each `cap` rows long) so that Python can wrap it
 * as numpy arrays without creating an object per mapping. */
#ifndef PHYSMEM_PROCMAPS_H
#define PHYSMEM_PROCMAPS_H

#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
#define PMPROC_MAXNAMES 64     /* smaps keys / VmFlags names per file: bits of a uint64 mask */
#define PMPROC_NAMELEN 32      /* longest key or VmFlags name, with its NUL */

/* Columns of the uint64 block: c64[col * cap + i]. PRESENT and VMFLAGS only for smaps. */
#define PMPROC_C64_START 0
#define PMPROC_C64_END 1
#define PMPROC_C64_OFFSET 2
#define PMPROC_C64_INODE 3
#define PMPROC_C64_PRESENT 4   /* bit k: smaps key k appeared for this mapping */
#define PMPROC_C64_VMFLAGS 5   /* bit k: VmFlags name k is set */
#define PMPROC_C64_MAPS 4
#define PMPROC_C64_SMAPS 6

/* Columns of the uint32 block. Offsets are into the parsed buffer. FLAGS_* only for smaps. */
#define PMPROC_C32_MAJOR 0
#define PMPROC_C32_MINOR 1
#define PMPROC_C32_NAME_OFF 2  /* path without the " (deleted)" suffix */
#define PMPROC_C32_NAME_LEN 3
#define PMPROC_C32_NAME_ID 4   /* a row with the same name (the first met, if the table held it) */
#define PMPROC_C32_FLAGS_OFF 5 /* VmFlags text, length 0 if absent */
#define PMPROC_C32_FLAGS_LEN 6
#define PMPROC_C32_MAPS 5
#define PMPROC_C32_SMAPS 7

/* Columns of the uint8 block. */
#define PMPROC_C8_PROT 0       /* PMPROC_READ | PMPROC_WRITE | PMPROC_EXEC */
#define PMPROC_C8_BITS 1       /* PMPROC_SHARED | PMPROC_DELETED | PMPROC_RAWFLAGS */
#define PMPROC_C8_KIND 2       /* PMPROC_KIND_* */
#define PMPROC_C8_N 3

#define PMPROC_READ 1
#define PMPROC_WRITE 2
#define PMPROC_EXEC 4

#define PMPROC_SHARED 1        /* 's' rather than 'p' */
#define PMPROC_DELETED 2       /* file path ended in " (deleted)" */
#define PMPROC_RAWFLAGS 4      /* VmFlags did not fit the name table: read the text instead */

/* What the name column says backs a mapping. */
#define PMPROC_KIND_ANONYMOUS 0
#define PMPROC_KIND_FILE 1
#define PMPROC_KIND_HEAP 2
#define PMPROC_KIND_STACK 3
#define PMPROC_KIND_THREAD_STACK 4
#define PMPROC_KIND_VDSO 5
#define PMPROC_KIND_VVAR 6
#define PMPROC_KIND_VSYSCALL 7
#define PMPROC_KIND_ANON_NAMED 8
#define PMPROC_KIND_ANON_SHMEM 9
#define PMPROC_KIND_OTHER 10

/* Names met while parsing, in order of first appearance; index k is bit k of a mask. */
struct pmproc_names {
    uint32_t n;
    uint8_t len[PMPROC_MAXNAMES];
    char name[PMPROC_MAXNAMES][PMPROC_NAMELEN];
};

struct pmproc_tables {
    struct pmproc_names keys;   /* smaps keys: values column k */
    struct pmproc_names flags;  /* VmFlags names: bit k of the VMFLAGS column */
};

/* Where and why pmproc_parse failed: the -errno it returns is the class of failure, this
 * the detail a message needs. */
struct pmproc_error {
    uint32_t line;      /* 1-based */
    uint32_t off, len;  /* the offending line within the buffer */
    int code;           /* PMPROC_E* */
};

/* Reasons, each with the -errno pmproc_parse returns for it. */
#define PMPROC_EHEADER 1   /* -EBADMSG: malformed mapping line */
#define PMPROC_EFIELD 2    /* -EBADMSG: malformed "Key: value [kB]" line */
#define PMPROC_EKEYS 3     /* -EOVERFLOW: more keys than PMPROC_MAXNAMES, or a key too long */
#define PMPROC_ECAP 4      /* -ENOSPC: more mappings than the caller's capacity */
#define PMPROC_EORPHAN 5   /* -EBADMSG: field line before any mapping line */
#define PMPROC_ELARGE 6    /* -EFBIG: buffer of 4 GiB or more: offsets would not fit */

size_t pmproc_count_headers(const char *buf, size_t len);

/* Parse maps (with_fields == 0) or smaps/smaps_rollup text into columns of `cap` rows:
 * c64 (PMPROC_C64_SMAPS or _MAPS columns), c32 (PMPROC_C32_*), c8 (PMPROC_C8_N) and, for
 * smaps, values[k * cap + i] = key k of mapping i (kB values in bytes, 0 where absent).
 * `tab` is filled from scratch. Returns the number of mappings, or -errno (see PMPROC_E*)
 * with *err filled; -ENOSPC alone is worth a retry, with a larger cap. */
int64_t pmproc_parse(const char *buf, size_t len, int with_fields, size_t cap,
                     uint64_t *c64, uint32_t *c32, uint8_t *c8, uint64_t *values,
                     struct pmproc_tables *tab, struct pmproc_error *err);

/* cffi:end */
#endif
