// SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST, from linux/netfilter_ipv4.h and
// linux/netfilter_ipv6/ip6_tables.h, which clash with glibc's headers when included together.
#pragma once
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
