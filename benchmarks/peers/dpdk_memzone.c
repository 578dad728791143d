/* DPDK's own way to get physically contiguous memory, for benchmarks/contiguous.py.
 *
 * usage: dpdk_memzone [EAL args] -- SIZE_BYTES...
 * Initialises the EAL with the arguments before "--" and then, for each size, calls
 * rte_memzone_reserve_aligned(..., RTE_MEMZONE_IOVA_CONTIG) and frees it again. Prints one
 * line per attempt: "zone SIZE ok|fail SECONDS IOVA", and "eal_init SECONDS" first.
 * With size 0 it searches (by bisection over 2 MiB steps) for the largest zone EAL gives. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_memzone.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int attempt(uint64_t size, int quiet)
{
    static int seq;
    char name[32];
    snprintf(name, sizeof name, "physmem_bench_%d", seq++);
    double t0 = now();
    const struct rte_memzone *mz = rte_memzone_reserve_aligned(
        name, size, SOCKET_ID_ANY, RTE_MEMZONE_IOVA_CONTIG, 4096);
    double t = now() - t0;
    if (!quiet)
        printf("zone %llu %s %.9f %#llx\n", (unsigned long long)size, mz ? "ok" : "fail", t,
               mz ? (unsigned long long)mz->iova : 0ULL);
    if (mz)
        rte_memzone_free(mz);
    else if (!quiet)
        printf("error %s\n", rte_strerror(rte_errno));
    return mz != NULL;
}

int main(int argc, char **argv)
{
    int split = argc;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            split = i;
            break;
        }
    double t0 = now();
    int ret = rte_eal_init(split, argv);
    if (ret < 0) {
        printf("eal_error %s\n", rte_strerror(rte_errno));
        return 3;
    }
    printf("eal_init %.6f\n", now() - t0);
    fflush(stdout);
    for (int i = split + 1; i < argc; i++) {
        uint64_t size = strtoull(argv[i], NULL, 0);
        if (size) {
            attempt(size, 0);
            continue;
        }
        const uint64_t step = 2u << 20;
        uint64_t lo = 0, hi = 64ULL << 30;  /* lo obtainable, hi not */
        double s0 = now();
        while (hi - lo > step) {
            uint64_t mid = (lo + (hi - lo) / 2) / step * step;
            if (mid <= lo)
                mid = lo + step;
            if (attempt(mid, 1))
                lo = mid;
            else
                hi = mid;
        }
        printf("largest %llu %.6f\n", (unsigned long long)lo, now() - s0);
    }
    fflush(stdout);
    rte_eal_cleanup();
    return 0;
}
