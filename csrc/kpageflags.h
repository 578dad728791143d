/* Stable /proc/kpageflags bit numbers come from the uapi header; the cffi declarations
 * (csrc/ffi_build.py) take their values from here at build time. */
#ifndef PHYSMEM_KPAGEFLAGS_H
#define PHYSMEM_KPAGEFLAGS_H
#include <linux/kernel-page-flags.h>
/* cffi:begin */
/* cffi:const KPF_LOCKED KPF_ERROR KPF_REFERENCED KPF_UPTODATE KPF_DIRTY KPF_LRU KPF_ACTIVE
 * KPF_SLAB KPF_WRITEBACK KPF_RECLAIM KPF_BUDDY KPF_MMAP KPF_ANON KPF_SWAPCACHE
 * KPF_SWAPBACKED KPF_COMPOUND_HEAD KPF_COMPOUND_TAIL KPF_HUGE KPF_UNEVICTABLE KPF_HWPOISON
 * KPF_NOPAGE KPF_KSM KPF_THP KPF_OFFLINE KPF_ZERO_PAGE KPF_IDLE */
/* KPF_PGTABLE arrived in 4.18 headers; define it for older ones (the bit number is ABI). */
#ifndef KPF_PGTABLE
#define KPF_PGTABLE 26
#endif
/* cffi:end */
#endif
