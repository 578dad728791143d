#include "translate.h"

#include "pageio.h"

/* Status codes written by pm_translate. */
enum { PM_OK = 0, PM_NOT_PRESENT = 1, PM_PFN_HIDDEN = 2, PM_OUTSIDE = 3 };

static inline uint64_t entry_index(uint64_t va, size_t i, int mode, unsigned page_shift,
                                   uint64_t base_vpn)
{
    return mode == PM_TRANSLATE_DIRECT ? i : (va >> page_shift) - base_vpn;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* Wide vector units make this loop several times faster; the loader picks the variant. */
#define PM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PM_CLONES
#endif

/* Page starts from entries raw[0..n): the address of page i is a page start, so its
 * physical address is pfn << page_shift. The loop PagemapEntries.paddr() runs: one load,
 * one store, no index arithmetic, so it vectorises. */
PM_CLONES
static size_t translate_page_starts(const uint64_t *raw, size_t n, unsigned page_shift,
                                    uint64_t present_bit, uint64_t pfn_mask, uint64_t *paddr)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t e = raw[i];
        uint64_t pfn = e & pfn_mask;
        uint64_t ok = ((e & present_bit) != 0) & (pfn != 0);
        paddr[i] = ok ? pfn << page_shift : 0;
        bad += ok ^ 1;
    }
    return bad;
}

/* Translate n virtual addresses to physical ones in one pass.
 * mode PM_TRANSLATE_SPAN:   raw holds nraw consecutive entries starting at page base_vpn.
 * mode PM_TRANSLATE_DIRECT: raw[i] is the pagemap entry of vaddr[i].
 * vaddr may be NULL: address i is then the start of page base_vpn + i.
 * paddr[i] = pfn << page_shift | page offset, or 0 where the address cannot be translated
 * (raw and paddr must not overlap). status (optional) gets a PM_* code per address;
 * *first_bad is the first failing index or -1. Returns the number of failures. */
size_t pm_translate(const uint64_t *vaddr, size_t n, const uint64_t *raw, uint64_t base_vpn,
                    uint64_t nraw, int mode, unsigned page_shift, uint64_t present_bit,
                    uint64_t pfn_mask, uint64_t *paddr, uint8_t *status, int64_t *first_bad)
{
    const uint64_t off_mask = ((uint64_t)1 << page_shift) - 1;
    size_t bad = 0;

    /* Branch-free hot loops, one per mode so each compiles tight: failures are only
     * counted here and explained in a second pass. */
#define PM_TRANSLATE_ONE(VA, K, INSIDE)                                                      \
    do {                                                                                     \
        uint64_t va_ = (VA), k_ = (K);                                                       \
        uint64_t inside_ = (INSIDE);                                                         \
        uint64_t e_ = raw[inside_ ? k_ : 0];                                                 \
        uint64_t pfn_ = e_ & pfn_mask;                                                       \
        uint64_t ok_ = inside_ & ((e_ & present_bit) != 0) & (pfn_ != 0);                    \
        paddr[i] = ok_ ? ((pfn_ << page_shift) | (va_ & off_mask)) : 0;                      \
        bad += !ok_;                                                                         \
    } while (0)

    if (!vaddr) {
        size_t inside = mode == PM_TRANSLATE_DIRECT || n <= nraw ? n : (size_t)nraw;
        bad = translate_page_starts(raw, inside, page_shift, present_bit, pfn_mask, paddr);
        for (size_t i = inside; i < n; i++) {
            paddr[i] = 0;
            bad++;
        }
    } else if (mode == PM_TRANSLATE_DIRECT) {
        for (size_t i = 0; i < n; i++)
            PM_TRANSLATE_ONE(vaddr[i], i, 1);
    } else {
        for (size_t i = 0; i < n; i++) {
            uint64_t k = (vaddr[i] >> page_shift) - base_vpn;
            PM_TRANSLATE_ONE(vaddr[i], k, k < nraw);
        }
    }
#undef PM_TRANSLATE_ONE

    *first_bad = -1;
    if (bad == 0 && !status)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t va = vaddr ? vaddr[i] : (base_vpn + i) << page_shift;
        uint64_t k = entry_index(va, i, mode, page_shift, base_vpn);
        uint8_t st = PM_OK;
        if (k >= nraw)
            st = PM_OUTSIDE;
        else if (!(raw[k] & present_bit))
            st = PM_NOT_PRESENT;
        else if ((raw[k] & pfn_mask) == 0)
            st = PM_PFN_HIDDEN;
        if (status)
            status[i] = st;
        if (st != PM_OK && *first_bad < 0) {
            *first_bad = (int64_t)i;
            if (!status)
                break;
        }
    }
    return bad;
}

/* In-place translation of entries e[i] for the addresses va[i] = one per page from base_vpn.
 * Written for the vectoriser: no early exits, selects instead of branches. */
PM_CLONES
static uint64_t translate_pages_in_place(const uint64_t *va, uint64_t *e, size_t n,
                                         uint64_t base_vpn, unsigned page_shift,
                                         uint64_t present_bit, uint64_t pfn_mask)
{
    const uint64_t off_mask = ((uint64_t)1 << page_shift) - 1;
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t entry = e[i];
        uint64_t v = va[i];
        uint64_t pfn = entry & pfn_mask;
        uint64_t ok = ((v >> page_shift) == base_vpn + i) & ((entry & present_bit) != 0) &
                      (pfn != 0);
        e[i] = ok ? ((pfn << page_shift) | (v & off_mask)) : entry;
        bad += ok ^ 1;
    }
    return bad;
}

/* Translate n addresses that lie one per page in pages base_vpn .. base_vpn + n - 1, reading
 * their pagemap entries from fd straight into paddr chunk by chunk and translating each chunk
 * while it is still in cache. Returns the number of addresses that failed (their slots keep
 * the raw entry), or -errno. *entries_read < n means the file ended early. */
int64_t pm_read_translate(int fd, const uint64_t *vaddr, size_t n, uint64_t base_vpn,
                          unsigned page_shift, uint64_t present_bit, uint64_t pfn_mask,
                          uint64_t *paddr, uint64_t *entries_read)
{
    int64_t bad = 0;
    *entries_read = 0;
    for (size_t done = 0; done < n; done += PM_TRANSLATE_CHUNK) {
        size_t len = n - done < PM_TRANSLATE_CHUNK ? n - done : PM_TRANSLATE_CHUNK;
        int64_t got = pm_pread_u64(fd, base_vpn + done, len, paddr + done);
        if (got < 0)
            return got;
        *entries_read += (uint64_t)got;
        if ((size_t)got < len)
            return bad;
        bad += (int64_t)translate_pages_in_place(vaddr + done, paddr + done, len,
                                                 base_vpn + done, page_shift, present_bit,
                                                 pfn_mask);
    }
    return bad;
}
