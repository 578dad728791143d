/* Stable /proc/kpageflags bit numbers come from the uapi header; the cffi declarations in
 * cdef/kpageflags.h take their values from here at build time. */
#ifndef PHYSMEM_KPAGEFLAGS_H
#define PHYSMEM_KPAGEFLAGS_H
#include <linux/kernel-page-flags.h>
/* KPF_PGTABLE arrived in 4.18 headers; define it for older ones (the bit number is ABI). */
#ifndef KPF_PGTABLE
#define KPF_PGTABLE 26
#endif
#endif
