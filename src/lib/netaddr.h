/*
 * netaddr: socket addresses as text, and address blocks (CIDR) to match
 * them against. An IPv4 address seen through an IPv6 socket
 * (::ffff:a.b.c.d) is written and matched as plain IPv4, so that limits,
 * logs and networks see one client as one address. No mail knowledge.
 */
#ifndef FULMAR_NETADDR_H
#define FULMAR_NETADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define NETADDR_TEXT_MAX INET6_ADDRSTRLEN

/* Writes the address ("?" for other families); returns the port. */
int netaddr_text(const struct sockaddr *sa, char *buf, size_t len);

/* An address block; a plain value, no ownership. */
struct netaddr_cidr {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network order; the first 4 for AF_INET */
	unsigned prefix;        /* bits that count: 0..32 or 0..128 */
};

/* Parses "192.0.2.0/24", "2001:db8::/32" or one address (a /32 or /128).
 * An IPv4-mapped IPv6 block of /96 or longer becomes the IPv4 block.
 * Host bits set beyond the prefix ("10.1.2.3/8") are an error: they are
 * almost always a typing mistake. 0, or -1 with err filled. */
int netaddr_cidr_parse(const char *text, struct netaddr_cidr *out,
		       char *err, size_t errlen);

/* Is the socket address (IPv4, IPv6, IPv4-mapped IPv6) inside the block?
 * Other families (the local socket) never are. */
bool netaddr_cidr_match(const struct netaddr_cidr *c, const struct sockaddr *sa);

#endif
