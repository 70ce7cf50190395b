/*
 * connector: an outgoing TCP connection opened without blocking the loop,
 * bounded by a timeout. No protocol knowledge.
 *
 * Ownership: a struct connector lives until its callback has run (it is
 * then freed) or until connector_cancel. The callback always runs from
 * the loop, never inside connector_start; on success it owns fd (a
 * non-blocking, close-on-exec, connected socket).
 */
#ifndef FULMAR_CONNECTOR_H
#define FULMAR_CONNECTOR_H

#include <sys/socket.h>

struct event_base;
struct connector;

/* fd >= 0 on success; else fd is -1 and err an errno (ETIMEDOUT). */
typedef void (*connector_fn)(void *arg, int fd, int err);

struct connector *connector_start(struct event_base *base, const struct sockaddr *sa,
				  socklen_t salen, double timeout, connector_fn fn,
				  void *arg);
/* The callback will not run; the socket is closed. */
void connector_cancel(struct connector *c);

#endif
