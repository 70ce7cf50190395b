/*
 * conn: a non-blocking stream socket on the event loop, with an input and
 * an output buffer. No protocol knowledge. Compared with a libevent
 * bufferevent it costs fewer system calls per request/reply turn: replies
 * are written at once by conn_flush() (a write event is armed only when
 * the kernel's buffer is full), reads need no FIONREAD, and the read
 * interest stays registered across turns.
 *
 * Input is bounded: past input_max unprocessed octets, reading stops
 * until conn_start_reading().
 *
 * Callbacks run from the loop; any of them may call conn_free(). conn
 * functions called by the owner never run a callback themselves.
 * Ownership: the owner frees the conn (which closes the socket). A conn
 * is a client's memory (lib/mem.h): conn_new fails with NULL (errno
 * ENOMEM) when it runs out, and fd is then still the caller's to close.
 */
#ifndef FULMAR_CONN_H
#define FULMAR_CONN_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct conn;
typedef struct ssl_ctx_st SSL_CTX;

enum conn_event {
	CONN_EOF,           /* the peer closed */
	CONN_ERROR,         /* read or write error */
	CONN_READ_TIMEOUT,  /* nothing arrived within the read timeout */
	CONN_WRITE_TIMEOUT, /* output stuck for the write timeout */
};

struct conn_callbacks {
	void (*readable)(void *arg);                     /* new octets in the input */
	void (*drained)(void *arg);                      /* blocked output all written */
	void (*event)(void *arg, enum conn_event what);  /* the end, or a timeout */
	void (*tls_ready)(void *arg);                    /* TLS handshake done */
};

struct conn *conn_new(struct event_base *base, int fd, const struct conn_callbacks *cb,
		      void *arg, size_t input_max);
void conn_free(struct conn *c);

struct evbuffer *conn_input(struct conn *c);
struct evbuffer *conn_output(struct conn *c);
size_t conn_pending_output(const struct conn *c);

/* Timeouts in seconds; 0 = none. They apply from the next read/write. */
void conn_set_read_timeout(struct conn *c, double seconds);
void conn_set_write_timeout(struct conn *c, double seconds);

/* Write as much output as the socket takes now; arm the write event for
 * the rest. A write error drops the output and is reported through the
 * event callback from the loop. */
void conn_flush(struct conn *c);

/*
 * Start TLS as the server, now (implicit TLS) or after STARTTLS's 220 has
 * been flushed. Input not yet processed is discarded: plaintext a client
 * pipelined behind STARTTLS must never be read as if it came inside TLS.
 * tls_ready runs when the handshake is done; a failed handshake is a
 * CONN_ERROR event; the read timeout bounds the handshake.
 */
void conn_start_tls(struct conn *c, SSL_CTX *ctx);
/* The same as the client, after the server's 220 to STARTTLS. Input not
 * yet processed is discarded (a server must not get plaintext it sent
 * before the 220 read as if it came inside TLS). server_name goes in SNI
 * (may be NULL). */
void conn_start_tls_client(struct conn *c, SSL_CTX *ctx, const char *server_name);
int conn_is_tls(const struct conn *c); /* 1 once the handshake is done */
int conn_handshaking(const struct conn *c); /* 1 while the handshake runs */
/* Why the handshake failed ("" if it did not): OpenSSL's reason. */
const char *conn_tls_error(const struct conn *c);
/* "TLSv1.3" and "TLS_AES_256_GCM_SHA384" after the handshake, else "". */
const char *conn_tls_version(const struct conn *c);
const char *conn_tls_cipher(const struct conn *c);
int conn_tls_cipher_bits(const struct conn *c);
void conn_stop_reading(struct conn *c);
void conn_start_reading(struct conn *c);

#endif
