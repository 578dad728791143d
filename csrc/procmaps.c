#include "procmaps.h"

#include <string.h>

/* The kernel prints every smaps mapping with the same keys in the same order, so the key
 * at position j of the previous mapping is tried first; the table is searched only when a
 * kernel adds, drops or reorders keys. */

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parse hex digits at *p (at least one, at most 16); advance *p. */
static int parse_hex(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    int d, n = 0;
    while (s < end && (d = hexval((unsigned char)*s)) >= 0) {
        if (++n > 16) return -1;
        v = v << 4 | (uint64_t)d;
        s++;
    }
    if (n == 0) return -1;
    *p = s;
    *out = v;
    return 0;
}

static int parse_dec(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    int n = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
        s++;
        n++;
    }
    if (n == 0) return -1;
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

static int parse_header(const char *s, const char *eol, struct pmproc_vma *v, const char *buf)
{
    uint64_t major, minor;
    if (parse_hex(&s, eol, &v->start) || s >= eol || *s++ != '-') return -1;
    if (parse_hex(&s, eol, &v->end) || s >= eol || *s++ != ' ') return -1;
    if (eol - s < 5) return -1;
    uint32_t perms = 0;
    if (s[0] == 'r') perms |= PMPROC_READ; else if (s[0] != '-') return -1;
    if (s[1] == 'w') perms |= PMPROC_WRITE; else if (s[1] != '-') return -1;
    if (s[2] == 'x') perms |= PMPROC_EXEC; else if (s[2] != '-') return -1;
    if (s[3] == 's') perms |= PMPROC_SHARED; else if (s[3] != 'p') return -1;
    if (s[4] != ' ') return -1;
    s += 5;
    v->perms = perms;
    if (parse_hex(&s, eol, &v->offset) || s >= eol || *s++ != ' ') return -1;
    if (parse_hex(&s, eol, &major) || s >= eol || *s++ != ':') return -1;
    if (parse_hex(&s, eol, &minor) || major > UINT32_MAX || minor > UINT32_MAX) return -1;
    v->dev = major << 32 | minor;
    if (s >= eol || *s++ != ' ') return -1;
    if (parse_dec(&s, eol, &v->inode)) return -1;
    if (s < eol && *s != ' ') return -1;
    while (s < eol && *s == ' ') s++;
    /* The name runs to the end of the line: it may contain spaces. */
    v->flags_off = (uint32_t)(s - buf);   /* stash the name span; moved by the caller */
    v->flags_len = (uint32_t)(eol - s);
    return 0;
}

static int find_key(struct pmproc_keys *keys, const char *k, size_t klen, uint32_t hint)
{
    if (hint < keys->n && keys->len[hint] == klen && memcmp(keys->name[hint], k, klen) == 0)
        return (int)hint;
    for (uint32_t i = 0; i < keys->n; i++)
        if (keys->len[i] == klen && memcmp(keys->name[i], k, klen) == 0) return (int)i;
    if (keys->n >= PMPROC_MAXKEYS || klen >= PMPROC_KEYLEN) return -1;
    memcpy(keys->name[keys->n], k, klen);
    keys->name[keys->n][klen] = 0;
    keys->len[keys->n] = (uint8_t)klen;
    return (int)keys->n++;
}

/* Parse maps (with_fields == 0) or smaps/smaps_rollup text. Fills vmas[0..n), names (unique
 * name spans, indexed by vma.name_id) and, for smaps, values[i * PMPROC_MAXKEYS + key] (kB
 * values already in bytes). Returns n, or -1 with *err filled. */
int64_t pmproc_parse(const char *buf, size_t len, int with_fields,
                     struct pmproc_vma *vmas, size_t cap,
                     struct pmproc_span *names, uint64_t *values,
                     struct pmproc_keys *keys, struct pmproc_span *flagsets,
                     uint32_t *nflagsets, struct pmproc_error *err)
{
    const char *p = buf, *end = buf + len;
    size_t n = 0, nnames = 0;
    uint32_t line = 0, pos = 0;
    struct pmproc_vma *cur = NULL;
    uint32_t order[PMPROC_MAXKEYS + 1];   /* key index seen at each position, last mapping */

    memset(order, 0xff, sizeof order);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        line++;
        if (eol == p) {             /* blank line: tolerated (trailing newline of a fixture) */
            p = nl ? nl + 1 : end;
            continue;
        }
        int code = 0;
        if (!with_fields || is_header(p, eol)) {
            if (n >= cap) { code = PMPROC_ECAP; goto fail; }
            cur = &vmas[n];
            memset(cur, 0, sizeof *cur);
            if (parse_header(p, eol, cur, buf)) { code = PMPROC_EHEADER; goto fail; }
            cur->line = line;
            cur->flags_id = PMPROC_NOFLAGS;
            uint32_t noff = cur->flags_off, nlen = cur->flags_len;
            cur->flags_off = cur->flags_len = 0;
            if (nnames && names[nnames - 1].len == nlen &&
                memcmp(buf + names[nnames - 1].off, buf + noff, nlen) == 0) {
                cur->name_id = (uint32_t)(nnames - 1);
            } else {
                names[nnames].off = noff;
                names[nnames].len = nlen;
                cur->name_id = (uint32_t)nnames++;
            }
            if (with_fields) memset(&values[n * PMPROC_MAXKEYS], 0, PMPROC_MAXKEYS * sizeof(uint64_t));
            n++;
            pos = 0;
        } else {
            if (!cur) { code = PMPROC_EORPHAN; goto fail; }
            const char *colon = memchr(p, ':', (size_t)(eol - p));
            if (!colon || colon == p) { code = PMPROC_EFIELD; goto fail; }
            size_t klen = (size_t)(colon - p);
            for (const char *k = p; k < colon; k++)
                if (*k == ' ' || *k == '\t') { code = PMPROC_EFIELD; goto fail; }
            const char *s = colon + 1;
            if (klen == 7 && memcmp(p, "VmFlags", 7) == 0) {
                while (s < eol && *s == ' ') s++;
                cur->flags_off = (uint32_t)(s - buf);
                cur->flags_len = (uint32_t)(eol - s);
                /* Few distinct VmFlags strings exist per process: give each an id once. */
                cur->flags_id = PMPROC_NOFLAGS;
                for (uint32_t i = 0; i < *nflagsets; i++) {
                    if (flagsets[i].len == cur->flags_len &&
                        memcmp(buf + flagsets[i].off, s, cur->flags_len) == 0) {
                        cur->flags_id = i;
                        break;
                    }
                }
                if (cur->flags_id == PMPROC_NOFLAGS && *nflagsets < PMPROC_MAXFLAGSETS) {
                    flagsets[*nflagsets].off = cur->flags_off;
                    flagsets[*nflagsets].len = cur->flags_len;
                    cur->flags_id = (*nflagsets)++;
                }
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
            int k = find_key(keys, p, klen, pos < PMPROC_MAXKEYS ? order[pos] : UINT32_MAX);
            if (k < 0) { code = PMPROC_EKEYS; goto fail; }
            if (pos < PMPROC_MAXKEYS) order[pos] = (uint32_t)k;
            pos++;
            cur->present |= (uint64_t)1 << k;
            values[(n - 1) * PMPROC_MAXKEYS + (size_t)k] = v;
        }
        p = nl ? nl + 1 : end;
        continue;
fail:
        err->line = line;
        err->off = (uint32_t)(p - buf);
        err->len = (uint32_t)(eol - p);
        err->code = code;
        return -1;
    }
    return (int64_t)n;
}
