/* Virtual-to-physical translation from pagemap entries. */
#ifndef PHYSMEM_TRANSLATE_H
#define PHYSMEM_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
/* How pm_translate finds the pagemap entry of each address. */
#define PM_TRANSLATE_SPAN 0
#define PM_TRANSLATE_DIRECT 1

/* Entries read and translated per step of pm_read_translate: small enough that the
 * translation pass finds them still in cache. */
#define PM_TRANSLATE_CHUNK 8192

size_t pm_translate(const uint64_t *vaddr, size_t n, const uint64_t *raw, uint64_t base_vpn,
                    uint64_t nraw, int mode, unsigned page_shift, uint64_t present_bit,
                    uint64_t pfn_mask, uint64_t *paddr, uint8_t *status, int64_t *first_bad);
int64_t pm_read_translate(int fd, const uint64_t *vaddr, size_t n, uint64_t base_vpn,
                          unsigned page_shift, uint64_t present_bit, uint64_t pfn_mask,
                          uint64_t *paddr, uint64_t *entries_read);

/* cffi:end */
#endif
