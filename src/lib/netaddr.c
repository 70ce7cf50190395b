/*
 * netaddr: see netaddr.h.
 */
#include "lib/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>

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
