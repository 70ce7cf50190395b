/*
 * netaddr: socket addresses as text. An IPv4 address seen through an IPv6
 * socket (::ffff:a.b.c.d) is written as plain IPv4, so that limits and
 * logs see one client as one address. No mail knowledge.
 */
#ifndef FULMAR_NETADDR_H
#define FULMAR_NETADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#define NETADDR_TEXT_MAX INET6_ADDRSTRLEN

/* Writes the address ("?" for other families); returns the port. */
int netaddr_text(const struct sockaddr *sa, char *buf, size_t len);

#endif
