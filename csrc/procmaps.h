/* Parser for /proc/<pid>/maps, smaps and smaps_rollup text (one pass, no allocation). */
#ifndef PHYSMEM_PROCMAPS_H
#define PHYSMEM_PROCMAPS_H

#include <stddef.h>
#include <stdint.h>

#define PMPROC_MAXKEYS 48
#define PMPROC_KEYLEN 32
#define PMPROC_MAXFLAGSETS 256
#define PMPROC_NOFLAGS 0xffffffffu

/* Permission bits in pmproc_vma.perms. */
#define PMPROC_READ 1
#define PMPROC_WRITE 2
#define PMPROC_EXEC 4
#define PMPROC_SHARED 8

struct pmproc_vma {
    uint64_t start, end, offset, inode;
    uint64_t dev;          /* major << 32 | minor */
    uint64_t present;      /* bit k: smaps key k appeared for this mapping */
    uint32_t perms;        /* PMPROC_* bits */
    uint32_t name_id;      /* index into the names spans; equal names in a row share one */
    uint32_t line;         /* 1-based line number of the header line */
    uint32_t flags_off, flags_len; /* VmFlags text, flags_len 0 if absent */
    uint32_t flags_id;  /* index into flagsets, PMPROC_NOFLAGS if none/overflow */
};

struct pmproc_span {
    uint32_t off, len;
};

/* smaps keys seen so far; the parser appends keys it has not met before. */
struct pmproc_keys {
    uint32_t n;
    uint8_t len[PMPROC_MAXKEYS];
    char name[PMPROC_MAXKEYS][PMPROC_KEYLEN];
};

struct pmproc_error {
    uint32_t line;      /* 1-based */
    uint32_t off, len;  /* the offending line within the buffer */
    int code;           /* PMPROC_E* */
};

#define PMPROC_EHEADER 1   /* malformed mapping line */
#define PMPROC_EFIELD 2    /* malformed "Key: value [kB]" line */
#define PMPROC_EKEYS 3     /* more distinct keys than PMPROC_MAXKEYS, or key too long */
#define PMPROC_ECAP 4      /* more mappings than the caller's capacity */
#define PMPROC_EORPHAN 5   /* field line before any mapping line */

size_t pmproc_count_headers(const char *buf, size_t len);
int64_t pmproc_parse(const char *buf, size_t len, int with_fields,
                     struct pmproc_vma *vmas, size_t cap,
                     struct pmproc_span *names, uint64_t *values,
                     struct pmproc_keys *keys, struct pmproc_span *flagsets,
                     uint32_t *nflagsets, struct pmproc_error *err);

#endif
