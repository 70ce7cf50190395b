/*
 * netaddr: see netaddr.h.
 */
#include "lib/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int netaddr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
			inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, (socklen_t)len);
		else
			inet_ntop(AF_INET6, &a->sin6_addr, buf, (socklen_t)len);
		return ntohs(a->sin6_port);
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)len);
		return ntohs(a->sin_port);
	}
	snprintf(buf, len, "?");
	return 0;
}

/* The v4-mapped prefix ::ffff:0:0/96. */
static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Do a and b agree on their first bits bits? */
static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return ((a[whole] ^ b[whole]) & mask) == 0;
}

int netaddr_cidr_parse(const char *text, struct netaddr_cidr *out,
		       char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hn = slash ? (size_t)(slash - text) : strlen(text);
	if (hn == 0 || hn >= sizeof(host)) {
		snprintf(err, errlen, "'%.60s' is not an address or address/prefix", text);
		return -1;
	}
	memcpy(host, text, hn);
	host[hn] = '\0';
	memset(out, 0, sizeof(*out));
	unsigned max;
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		snprintf(err, errlen, "'%.60s' is not an IPv4 or IPv6 address", host);
		return -1;
	}
	out->prefix = max;
	if (slash) {
		const char *p = slash + 1;
		unsigned v = 0;
		size_t nd = 0;
		for (; p[nd] >= '0' && p[nd] <= '9' && nd < 4; nd++)
			v = v * 10 + (unsigned)(p[nd] - '0');
		if (nd == 0 || p[nd] != '\0' || v > max) {
			snprintf(err, errlen, "'%.60s': the prefix must be a number from 0 to %u",
				 text, max);
			return -1;
		}
		out->prefix = v;
	}
	for (unsigned b = out->prefix; b < max; b++) {
		if (out->addr[b / 8] & (0x80 >> (b % 8))) {
			snprintf(err, errlen, "'%.60s' has bits set after its /%u prefix",
				 text, out->prefix);
			return -1;
		}
	}
	if (out->family == AF_INET6 && out->prefix >= 96 &&
	    memcmp(out->addr, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	return 0;
}

bool netaddr_cidr_match(const struct netaddr_cidr *c, const struct sockaddr *sa)
{
	const unsigned char *a;
	int family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		a = (const unsigned char *)&s4->sin_addr;
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		a = s6->sin6_addr.s6_addr;
		family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a += 12;
			family = AF_INET;
		}
	} else {
		return false;
	}
	return family == c->family && prefix_equal(a, c->addr, c->prefix);
}
