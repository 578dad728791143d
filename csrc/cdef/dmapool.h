#define PM_DMAPOOL_MIN_ORDER ...
typedef struct pm_dmapool pm_dmapool;
pm_dmapool *pm_dmapool_new(uint64_t size, unsigned max_order);
void pm_dmapool_destroy(pm_dmapool *p);
int64_t pm_dmapool_alloc(pm_dmapool *p, unsigned order);
int pm_dmapool_free(pm_dmapool *p, uint64_t offset, uint64_t nbytes);
int64_t pm_dmapool_alloc_many(pm_dmapool *p, unsigned order, uint64_t count, uint64_t *out);
int64_t pm_dmapool_free_many(pm_dmapool *p, const uint64_t *offsets, uint64_t count,
                             uint64_t nbytes, unsigned char *orders, uint64_t *bad);
int pm_dmapool_close(pm_dmapool *p, int force);
void pm_dmapool_stats(pm_dmapool *p, uint64_t *out);
