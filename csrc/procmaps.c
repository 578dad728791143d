#include "procmaps.h"

#include <errno.h>
#include <string.h>

/* The kernel prints every smaps mapping with the same keys in the same order, so the key
 * at position j of the previous mapping is tried first; the table is searched only when a
 * kernel adds, drops or reorders keys. */

/* Hex digit value + 1, 0 for anything else (so the table needs no range initialiser). */
static const uint8_t HEX1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* Parse hex digits at *p (at least one, at most 16); advance *p. 0 or -EBADMSG. */
static inline int parse_hex(const char **p, const char *end, uint64_t *out)
{
    const unsigned char *s = (const unsigned char *)*p, *e = (const unsigned char *)end;
    const unsigned char *start = s;
    uint64_t v = 0;
    unsigned d;
    /* With 17 bytes in reach the loop needs no buffer-end test (17 digits are an error
     * anyway). An 8-digit lookup block tried first was slower: it fails on 2-digit device
     * numbers and the 12-digit addresses still needed this loop for their tail. */
    if (e - s >= 17) {
        const unsigned char *lim = s + 17;
        while (s < lim && (d = HEX1[*s]) != 0) {
            v = v << 4 | (d - 1);
            s++;
        }
    } else
    while (s < e && (d = HEX1[*s]) != 0) {
        v = v << 4 | (d - 1);
        s++;
    }
    if (s == start || s - start > 16) return -EBADMSG;
    *p = (const char *)s;
    *out = v;
    return 0;
}

static inline uint64_t load64(const char *s)
{
    uint64_t w;
    memcpy(&w, s, sizeof w);
    return w;
}

/* s[0..len) == t[0..len), inline: keys are short, where a call to memcmp costs more. */
static inline int same_bytes(const char *s, const char *t, size_t len)
{
    size_t j = 0;
    for (; j + 8 <= len; j += 8)
        if (load64(s + j) != load64(t + j)) return 0;
    for (; j < len; j++)
        if (s[j] != t[j]) return 0;
    return 1;
}

/* Parse decimal digits at *p (at least one, no overflow); advance *p. 0 or -EBADMSG. */
static inline int parse_dec(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    int n = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -EBADMSG;
        v = v * 10 + d;
        s++;
        n++;
    }
    if (n == 0) return -EBADMSG;
    *p = s;
    *out = v;
    return 0;
}

static inline int is_header(const char *s, const char *end)
{
    /* A mapping line starts with lower-case hex digits followed by '-'; keys never do. */
    while (s < end && ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) s++;
    return s < end && *s == '-';
}

size_t pmproc_count_headers(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    size_t n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        if (is_header(p, eol)) n++;
        p = nl ? nl + 1 : end;
    }
    return n;
}

#define NAME_IS(lit) (len == sizeof lit - 1 && memcmp(s, lit, sizeof lit - 1) == 0)
#define NAME_STARTS(lit) (len >= sizeof lit - 1 && memcmp(s, lit, sizeof lit - 1) == 0)

/* Kind of a name column; strips " (deleted)" from file paths (only they carry it). */
static uint8_t classify(const char *s, uint32_t *lenp, uint8_t *bits)
{
    uint32_t len = *lenp;
    if (len == 0) return PMPROC_KIND_ANONYMOUS;
    if (s[0] == '/') {
        if (len >= 10 && memcmp(s + len - 10, " (deleted)", 10) == 0) {
            *lenp = len - 10;
            *bits |= PMPROC_DELETED;
        }
        return PMPROC_KIND_FILE;
    }
    if (s[0] != '[') return PMPROC_KIND_OTHER;
    if (NAME_IS("[heap]")) return PMPROC_KIND_HEAP;
    if (NAME_IS("[stack]")) return PMPROC_KIND_STACK;
    if (NAME_IS("[vdso]")) return PMPROC_KIND_VDSO;
    if (NAME_IS("[vvar]") || NAME_IS("[vvar_vclock]")) return PMPROC_KIND_VVAR;
    if (NAME_IS("[vsyscall]")) return PMPROC_KIND_VSYSCALL;
    if (NAME_STARTS("[stack:")) return PMPROC_KIND_THREAD_STACK;
    if (NAME_STARTS("[anon:")) return PMPROC_KIND_ANON_NAMED;
    if (NAME_STARTS("[anon_shmem:")) return PMPROC_KIND_ANON_SHMEM;
    return PMPROC_KIND_OTHER;
}

/* Parse the mapping line at s into row i. Bounds are `end` (the buffer), not the line's end:
 * '\n' fails every field test, so no separate memchr is needed before the name. Sets *eol.
 * 0 or -EBADMSG. */
static int parse_header(const char *s, const char *end, const char *buf, size_t cap, size_t i,
                        uint64_t *c64, uint32_t *c32, uint8_t *c8, const char **eol)
{
    uint64_t start, stop, offset, major, minor, inode;
    if (parse_hex(&s, end, &start) || s >= end || *s++ != '-') return -EBADMSG;
    if (parse_hex(&s, end, &stop) || s >= end || *s++ != ' ') return -EBADMSG;
    if (stop < start) return -EBADMSG; /* else sizes (end - start) would wrap around */
    if (end - s < 5) return -EBADMSG;
    uint8_t prot = 0, bits = 0;
    if (s[0] == 'r') prot |= PMPROC_READ; else if (s[0] != '-') return -EBADMSG;
    if (s[1] == 'w') prot |= PMPROC_WRITE; else if (s[1] != '-') return -EBADMSG;
    if (s[2] == 'x') prot |= PMPROC_EXEC; else if (s[2] != '-') return -EBADMSG;
    if (s[3] == 's') bits |= PMPROC_SHARED; else if (s[3] != 'p') return -EBADMSG;
    if (s[4] != ' ') return -EBADMSG;
    s += 5;
    if (parse_hex(&s, end, &offset) || s >= end || *s++ != ' ') return -EBADMSG;
    if (parse_hex(&s, end, &major) || s >= end || *s++ != ':') return -EBADMSG;
    if (parse_hex(&s, end, &minor) || major > UINT32_MAX || minor > UINT32_MAX) return -EBADMSG;
    if (s >= end || *s++ != ' ') return -EBADMSG;
    if (parse_dec(&s, end, &inode)) return -EBADMSG;
    if (s < end && *s != ' ' && *s != '\n') return -EBADMSG;
    while (s < end && *s == ' ') s++;
    /* The name runs to the end of the line: it may contain spaces. Most mappings of a big
     * process are anonymous, with no name, where a call to memchr costs more than a test. */
    const char *nl = s < end && *s == '\n' ? s : memchr(s, '\n', (size_t)(end - s));
    *eol = nl ? nl : end;
    uint32_t nlen = (uint32_t)(*eol - s);
    c64[PMPROC_C64_START * cap + i] = start;
    c64[PMPROC_C64_END * cap + i] = stop;
    c64[PMPROC_C64_OFFSET * cap + i] = offset;
    c64[PMPROC_C64_INODE * cap + i] = inode;
    c32[PMPROC_C32_MAJOR * cap + i] = (uint32_t)major;
    c32[PMPROC_C32_MINOR * cap + i] = (uint32_t)minor;
    c8[PMPROC_C8_KIND * cap + i] = classify(s, &nlen, &bits);
    c32[PMPROC_C32_NAME_OFF * cap + i] = (uint32_t)(s - buf);
    c32[PMPROC_C32_NAME_LEN * cap + i] = nlen;
    c8[PMPROC_C8_PROT * cap + i] = prot;
    c8[PMPROC_C8_BITS * cap + i] = bits;
    return 0;
}

/* Index of name s[0..len) in t, appended if new; -EOVERFLOW if it does not fit. */
static int find_name(struct pmproc_names *t, const char *s, size_t len, uint32_t hint)
{
    if (hint < t->n && t->len[hint] == len && memcmp(t->name[hint], s, len) == 0)
        return (int)hint;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->len[i] == len && memcmp(t->name[i], s, len) == 0) return (int)i;
    if (t->n >= PMPROC_MAXNAMES || len >= PMPROC_NAMELEN) return -EOVERFLOW;
    memcpy(t->name[t->n], s, len);
    t->name[t->n][len] = 0;
    t->len[t->n] = (uint8_t)len;
    return (int)t->n++;
}

/* The whitespace of Python's str.split() within ASCII, so the names match a text split. */
static inline int is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* VmFlags text -> bitmask over t; -EOVERFLOW if a name does not fit the table. */
static int flags_mask(struct pmproc_names *t, const char *s, const char *e, uint64_t *mask)
{
    uint64_t m = 0;
    while (s < e) {
        while (s < e && is_space((unsigned char)*s)) s++;
        const char *w = s;
        while (s < e && !is_space((unsigned char)*s)) s++;
        if (s == w) break;
        int k = find_name(t, w, (size_t)(s - w), UINT32_MAX);
        if (k < 0) return -EOVERFLOW;
        m |= (uint64_t)1 << k;
    }
    *mask = m;
    return 0;
}

/* Names repeat (a library maps 4 or 5 times, most mappings have none): each row gets the row
 * of its name's first appearance, so Python decodes every distinct name once and takes the
 * rest from a table instead of slicing and hashing each row's bytes. Open addressing over
 * row numbers; once half full, new names point to their own row (correct, just not shared). */
#define NAMETAB 4096
struct nametab {
    uint32_t slot[NAMETAB];   /* row + 1; 0 = empty */
    uint32_t used;
    uint32_t empty;           /* row + 1 of the first nameless mapping; 0 = none yet */
};

static uint32_t name_id(struct nametab *t, const char *buf, size_t cap, size_t i,
                        const uint32_t *c32)
{
    const uint32_t *off = c32 + PMPROC_C32_NAME_OFF * cap, *len = c32 + PMPROC_C32_NAME_LEN * cap;
    const uint32_t *id = c32 + PMPROC_C32_NAME_ID * cap;
    uint32_t l = len[i];
    const char *s = buf + off[i];
    if (l == 0) {
        if (!t->empty) t->empty = (uint32_t)i + 1;
        return t->empty - 1;
    }
    /* The previous row first: consecutive mappings of one file are the common case. */
    if (i > 0 && len[i - 1] == l && memcmp(buf + off[i - 1], s, l) == 0) return id[i - 1];
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (uint32_t k = 0; k < l; k++) h = (h ^ (unsigned char)s[k]) * 16777619u;
    for (uint32_t j = h & (NAMETAB - 1);; j = (j + 1) & (NAMETAB - 1)) {
        uint32_t r = t->slot[j];
        if (r == 0) {
            if (t->used < NAMETAB / 2) {
                t->slot[j] = (uint32_t)i + 1;
                t->used++;
            }
            return (uint32_t)i;
        }
        r--;
        if (len[r] == l && memcmp(buf + off[r], s, l) == 0) return r;
    }
}

/* Distinct VmFlags texts are few per process: remember recent ones and their masks. */
#define FLAGCACHE 8
struct flagcache {
    uint32_t off[FLAGCACHE], len[FLAGCACHE];
    uint64_t mask[FLAGCACHE];
    unsigned n, next;
};

int64_t pmproc_parse(const char *buf, size_t len, int with_fields, size_t cap,
                     uint64_t *c64, uint32_t *c32, uint8_t *c8, uint64_t *values,
                     struct pmproc_tables *tab, struct pmproc_error *err)
{
    const char *p = buf, *end = buf + len;
    size_t n = 0;
    uint32_t line = 0, pos = 0;
    uint32_t order[PMPROC_MAXNAMES];   /* key index seen at each position, last mapping */
    struct flagcache fc = {.n = 0, .next = 0};
    struct nametab names;
    struct pmproc_names *keys = &tab->keys;

    tab->keys.n = tab->flags.n = 0;
    memset(order, 0xff, sizeof order);
    memset(&names, 0, sizeof names);
    if (len >= (size_t)1 << 32) {
        *err = (struct pmproc_error){.line = 0, .off = 0, .len = 0, .code = PMPROC_ELARGE};
        return -EFBIG;
    }
    while (p < end) {
        const char *eol;
        line++;
        if (*p == '\n') {           /* blank line: tolerated (trailing newline of a fixture) */
            p++;
            continue;
        }
        int code = 0;
        if (!with_fields || is_header(p, end)) {
            if (n >= cap) { code = PMPROC_ECAP; goto fail; }
            if (parse_header(p, end, buf, cap, n, c64, c32, c8, &eol)) {
                code = PMPROC_EHEADER;
                goto fail;
            }
            c32[PMPROC_C32_NAME_ID * cap + n] = name_id(&names, buf, cap, n, c32);
            if (with_fields) {
                c64[PMPROC_C64_PRESENT * cap + n] = 0;
                c64[PMPROC_C64_VMFLAGS * cap + n] = 0;
                c32[PMPROC_C32_FLAGS_OFF * cap + n] = 0;
                c32[PMPROC_C32_FLAGS_LEN * cap + n] = 0;
                for (uint32_t k = 0; k < keys->n; k++) values[k * cap + n] = 0;
            }
            n++;
            pos = 0;
        } else {
            /* Fast path: the key the previous mapping had at this position, spaces, digits,
             * " kB" and the newline, in one forward pass. Anything else (a new key, a tab,
             * an error to report) takes the general path below, which starts over. */
            uint32_t hint = pos < PMPROC_MAXNAMES ? order[pos] : UINT32_MAX;
            if (n > 0 && hint < keys->n) {
                size_t kl = keys->len[hint];
                const char *s = p + kl + 1;
                if (s < end && p[kl] == ':' && same_bytes(p, keys->name[hint], kl)) {
                    uint64_t v;
                    while (end - s >= 8 && load64(s) == 0x2020202020202020ull) s += 8;
                    while (s < end && *s == ' ') s++;
                    if (parse_dec(&s, end, &v) == 0) {
                        const char *e = NULL;
                        if (end - s >= 3 && memcmp(s, " kB", 3) == 0
                                && (end - s == 3 || s[3] == '\n')) {
                            if (v <= UINT64_MAX / 1024) {
                                v *= 1024;
                                e = s + 3;
                            }
                        } else if (s == end || *s == '\n') {
                            e = s;
                        }
                        if (e) {
                            size_t i = n - 1;
                            pos++;
                            c64[PMPROC_C64_PRESENT * cap + i] |= (uint64_t)1 << hint;
                            values[(size_t)hint * cap + i] = v;
                            p = e < end ? e + 1 : end;
                            continue;
                        }
                    }
                }
            }
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            eol = nl ? nl : end;
            if (n == 0) { code = PMPROC_EORPHAN; goto fail; }
            size_t i = n - 1;
            const char *colon = memchr(p, ':', (size_t)(eol - p));
            if (!colon || colon == p) { code = PMPROC_EFIELD; goto fail; }
            size_t klen = (size_t)(colon - p);
            for (const char *k = p; k < colon; k++)
                if (*k == ' ' || *k == '\t') { code = PMPROC_EFIELD; goto fail; }
            const char *s = colon + 1;
            if (klen == 7 && memcmp(p, "VmFlags", 7) == 0) {
                while (s < eol && *s == ' ') s++;
                uint32_t off = (uint32_t)(s - buf), flen = (uint32_t)(eol - s);
                uint64_t mask = 0;
                unsigned j;
                for (j = 0; j < fc.n; j++)
                    if (fc.len[j] == flen && memcmp(buf + fc.off[j], s, flen) == 0) break;
                if (j < fc.n) {
                    mask = fc.mask[j];
                } else if (flags_mask(&tab->flags, s, eol, &mask) == 0) {
                    j = fc.next;
                    fc.next = (fc.next + 1) % FLAGCACHE;
                    if (fc.n < FLAGCACHE) fc.n++;
                    fc.off[j] = off;
                    fc.len[j] = flen;
                    fc.mask[j] = mask;
                } else {
                    c8[PMPROC_C8_BITS * cap + i] |= PMPROC_RAWFLAGS;
                }
                c64[PMPROC_C64_VMFLAGS * cap + i] = mask;
                c32[PMPROC_C32_FLAGS_OFF * cap + i] = off;
                c32[PMPROC_C32_FLAGS_LEN * cap + i] = flen;
                p = nl ? nl + 1 : end;
                continue;
            }
            while (s < eol && (*s == ' ' || *s == '\t')) s++;
            uint64_t v;
            if (parse_dec(&s, eol, &v)) { code = PMPROC_EFIELD; goto fail; }
            if (eol - s == 3 && memcmp(s, " kB", 3) == 0) {
                if (v > UINT64_MAX / 1024) { code = PMPROC_EFIELD; goto fail; }
                v *= 1024;
            } else if (s != eol) {
                code = PMPROC_EFIELD;
                goto fail;
            }
            uint32_t known = keys->n;
            int k = find_name(keys, p, klen, pos < PMPROC_MAXNAMES ? order[pos] : UINT32_MAX);
            if (k < 0) { code = PMPROC_EKEYS; goto fail; }
            if ((uint32_t)k >= known)   /* a new column: earlier mappings lack this key */
                memset(&values[(size_t)k * cap], 0, i * sizeof *values);
            if (pos < PMPROC_MAXNAMES) order[pos] = (uint32_t)k;
            pos++;
            c64[PMPROC_C64_PRESENT * cap + i] |= (uint64_t)1 << k;
            values[(size_t)k * cap + i] = v;
        }
        p = eol < end ? eol + 1 : end;
        continue;
fail:
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        err->line = line;
        err->off = (uint32_t)(p - buf);
        err->len = (uint32_t)(eol - p);
        err->code = code;
        return code == PMPROC_ECAP ? -ENOSPC : code == PMPROC_EKEYS ? -EOVERFLOW : -EBADMSG;
    }
    return (int64_t)n;
}
