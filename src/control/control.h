/*
 * control: the daemon's control socket, STATE_DIR/control.sock (unix
 * domain, mode 0600, owned by the user the daemon runs as), through
 * which `fulmar queue list|show|flush|hold|release|delete|bounce` reach
 * the delivery engine of the running server. Protocol: control_proto.h.
 *
 * Every client is bounded: one request line of at most CONTROL_LINE_MAX
 * octets is read at a time, the next only once the reply is written; a
 * malformed request gets "error: ..." and the connection is closed; idle
 * and stuck clients time out; at most CONTROL_CLIENTS_MAX at once.
 *
 * Ownership: control_open() creates the socket file (a stale one left by
 * a crash is replaced; a live one, answered by another daemon, is an
 * error); control_free() closes every client and removes the file. The
 * delivery engine is borrowed from control_start() to control_free().
 * Loop thread only.
 */
#ifndef FULMAR_CONTROL_H
#define FULMAR_CONTROL_H

#include <stddef.h>

struct event_base;
struct delivery;
struct control;

#define CONTROL_CLIENTS_MAX 32

/* Bind and listen on state_dir/control.sock (not yet accepting). NULL
 * with err filled on failure. Call it as the user the daemon serves as,
 * so that the socket belongs to that user. */
struct control *control_open(struct event_base *base, const char *state_dir,
			     char *err, size_t errlen);
/* Start accepting; requests go to d. */
void control_start(struct control *c, struct delivery *d);
/* Close every client and the socket, remove the socket file. NULL is a
 * no-op. */
void control_free(struct control *c);

#endif
