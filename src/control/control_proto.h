/*
 * control_proto: the control socket's protocol, as pure functions over
 * bytes (no I/O), shared by the server (control.c) and `fulmar queue`
 * (cli_queue.c).
 *
 *   request:  one line "COMMAND [ARG]\n", at most CONTROL_LINE_MAX octets
 *             with the newline; commands are LIST, SHOW id, FLUSH [id],
 *             HOLD id, RELEASE id, DELETE id, BOUNCE id (case-insensitive)
 *   reply:    "ok\n" or "error: TEXT\n", then payload lines, then a line
 *             with only ".". Payload lines never begin with "." (they
 *             start with a queue id or with spaces), so no stuffing.
 *
 * The listing format (one message):
 *
 *   0A1B2C3D4E5F6071  age=12s size=345 from=<a@b.example> nrcpt=2 [held]
 *       x@y.example  deferred  why=backoff next_attempt_in=30s attempts=2 last_error="..."
 *
 * Every value that came from the network or the queue files is escaped
 * (control_proto_escape): a listing never carries a raw control character
 * to a terminal.
 */
#ifndef FULMAR_CONTROL_PROTO_H
#define FULMAR_CONTROL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

struct evbuffer;

#define CONTROL_LINE_MAX 512
#define CONTROL_SOCKET_NAME "control.sock"

enum control_cmd {
	CONTROL_LIST,
	CONTROL_SHOW,
	CONTROL_FLUSH,
	CONTROL_HOLD,
	CONTROL_RELEASE,
	CONTROL_DELETE,
	CONTROL_BOUNCE,
};

struct control_req {
	enum control_cmd cmd;
	bool has_id;
	char id[QUEUE_ID_LEN + 1]; /* upper-case hex when has_id */
};

/*
 * Parse one request line, without its "\n" (a "\r" before it is allowed).
 * Returns 0, or -1 with a short reason in err (no peer octets are copied
 * into it).
 */
int control_proto_parse(const char *line, size_t len, struct control_req *req,
			char *err, size_t errlen);

/* The command's name as sent on the wire ("LIST", ...). */
const char *control_proto_cmd_name(enum control_cmd cmd);

/* True when s is a queue id (QUEUE_ID_LEN hex digits, either case). */
bool control_proto_is_id(const char *s, size_t len);

/*
 * Append s[0..n) to out with every octet that could upset a terminal or
 * the line framing written as \xHH: C0 and C1 controls, DEL, octets that
 * are not part of valid UTF-8; '"' and '\' get a backslash.
 */
void control_proto_escape(struct evbuffer *out, const char *s, size_t n);

/* The state's word in listings: pending, deferred, delivered, failed. */
const char *control_proto_state_name(enum rcpt_state st);

/*
 * Append the listing of one message (header line and one line per
 * recipient). why: the engine's reason per recipient, or NULL (offline).
 * verbose adds what `queue show` prints: arrival, client, original
 * recipient addresses and DSN parameters. now: unix seconds.
 */
void control_proto_format(struct evbuffer *out, const struct envelope *env, bool held,
			  const char *const *why, bool verbose, int64_t now);

#endif
