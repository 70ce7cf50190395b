/*
 * session_auth: AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
 * mechanisms; the password is checked on a worker (smtp_server), and each
 * failure waits longer before its 535 (auth_throttle). The rest of the
 * session is smtp_session.c (session.h).
 */
#include <ctype.h>
#include <event2/event.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/conn.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "proto/base64.h"
#include "smtp/auth_throttle.h"
#include "smtp/session.h"
#include "smtp/smtp_server.h"

static void auth_reply_failure(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	s->paused = false;
	session_reply_error(s, "AUTH", "535 5.7.8 Error: authentication failed");
	session_process(s);
	session_settle(s);
}

static void on_password_checked(void *arg, bool ok)
{
	struct smtp_session *s = arg;
	s->auth_check = NULL;
	struct auth_throttle *th = smtp_server_throttle(s->srv);
	int64_t now = (int64_t)time(NULL);
	struct log_line l;
	log_begin(&l, ok ? LOG_INFO : LOG_WARNING, ok ? "auth" : "auth_failed");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "client", s->client);
	log_str(&l, "user", s->auth_try_user);
	log_end(&l);
	if (ok) {
		auth_throttle_succeeded(th, s->client, s->auth_try_user);
		s->auth_user = mem_strdup(s->auth_try_user);
		s->paused = false;
		if (s->auth_user == NULL)
			session_reply_oom(s, "AUTH"); /* not authenticated: may try again */
		else
			session_reply(s, "235 2.7.0 Authentication successful");
		session_process(s);
		session_settle(s);
		return;
	}
	/* Each failure waits a little longer before its 535. */
	int delay = auth_throttle_failed(th, s->client, s->auth_try_user, now);
	struct timeval tv = { delay, 0 };
	if (s->auth_delay == NULL &&
	    (s->auth_delay = evtimer_new(smtp_server_base(s->srv), auth_reply_failure, s)) == NULL) {
		auth_reply_failure(-1, 0, s); /* no memory for the delay: 535 now */
		return;
	}
	evtimer_add(s->auth_delay, &tv);
}

static void auth_check_password(struct smtp_session *s, const char *user, size_t ulen,
				const char *password, size_t plen)
{
	session_set_state(s, S_READY);
	if (ulen == 0 || ulen > AUTH_FIELD_MAX || plen == 0 || plen > AUTH_FIELD_MAX ||
	    memchr(user, '\0', ulen) || memchr(password, '\0', plen)) {
		memcpy(s->auth_try_user, user, ulen > AUTH_FIELD_MAX ? 0 : ulen);
		s->auth_try_user[ulen > AUTH_FIELD_MAX ? 0 : ulen] = '\0';
		session_reply_error(s, "AUTH", "535 5.7.8 Error: authentication failed");
		return;
	}
	memcpy(s->auth_try_user, user, ulen);
	s->auth_try_user[ulen] = '\0';
	for (char *p = s->auth_try_user; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	char pw[AUTH_FIELD_MAX + 1];
	memcpy(pw, password, plen);
	pw[plen] = '\0';
	s->paused = true; /* until the worker has hashed it */
	s->auth_check = smtp_server_check_password(s->srv, s->auth_try_user, pw,
						   on_password_checked, s);
	explicit_bzero(pw, sizeof(pw));
	if (s->auth_check == NULL) {
		s->paused = false;
		session_reply_oom(s, "AUTH");
	}
}

/* PLAIN: [authzid] NUL authcid NUL password (RFC 4616). */
static void auth_plain(struct smtp_session *s, const unsigned char *m, size_t n)
{
	const unsigned char *nul1 = memchr(m, '\0', n);
	const unsigned char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - m)) : NULL;
	if (nul1 == NULL || nul2 == NULL) {
		session_set_state(s, S_READY);
		session_reply_error(s, "AUTH", "501 5.5.2 Error: malformed PLAIN response");
		return;
	}
	size_t zlen = (size_t)(nul1 - m);
	const char *user = (const char *)nul1 + 1;
	size_t ulen = (size_t)(nul2 - nul1 - 1);
	if (zlen > 0 && (zlen != ulen || memcmp(m, user, ulen) != 0)) {
		/* Acting as another user (authzid) is not supported. */
		session_set_state(s, S_READY);
		session_reply_error(s, "AUTH", "535 5.7.8 Error: authorization identity not permitted");
		return;
	}
	auth_check_password(s, user, ulen, (const char *)nul2 + 1,
			    n - (size_t)(nul2 + 1 - m));
}

/* One base64 response line of the exchange ("*" cancels). */
void session_auth_response(struct smtp_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		session_set_state(s, S_READY);
		session_reply_error(s, "AUTH", "501 5.0.0 Authentication aborted");
		return;
	}
	unsigned char buf[AUTH_LINE_MAX];
	long n = base64_decode(line, len, buf, sizeof(buf));
	if (n < 0) {
		session_set_state(s, S_READY);
		session_reply_error(s, "AUTH", "501 5.5.2 Error: cannot decode the response");
		return;
	}
	switch (s->auth_step) {
	case AUTH_PLAIN_RESPONSE:
		auth_plain(s, buf, (size_t)n);
		break;
	case AUTH_LOGIN_USER:
		if (n == 0 || n > AUTH_FIELD_MAX || memchr(buf, '\0', (size_t)n)) {
			session_set_state(s, S_READY);
			session_reply_error(s, "AUTH", "501 5.5.2 Error: malformed user name");
			break;
		}
		memcpy(s->auth_login_user, buf, (size_t)n);
		s->auth_login_user[n] = '\0';
		s->auth_step = AUTH_LOGIN_PASSWORD;
		session_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
		break;
	case AUTH_LOGIN_PASSWORD:
		auth_check_password(s, s->auth_login_user, strlen(s->auth_login_user),
				    (const char *)buf, (size_t)n);
		break;
	}
	explicit_bzero(buf, sizeof(buf));
}

void session_cmd_auth(struct smtp_session *s, const char *arg, size_t len)
{
	if (!s->listener->auth) {
		session_reply_error(s, "AUTH", "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (s->auth_user) {
		session_reply_error(s, "AUTH", "503 5.5.1 Error: already authenticated");
		return;
	}
	if (s->state != S_READY || !s->esmtp) {
		session_reply_error(s, "AUTH", s->state == S_INIT || !s->esmtp
				       ? "503 5.5.1 Error: send EHLO first"
				       : "503 5.5.1 Error: AUTH not allowed in a mail transaction");
		return;
	}
	if (!conn_is_tls(s->conn) && !s->listener->auth_plaintext) {
		session_reply_error(s, "AUTH", "538 5.7.11 Encryption required for requested "
				       "authentication mechanism");
		return;
	}
	if (auth_throttle_wait(smtp_server_throttle(s->srv), s->client, NULL,
			       (int64_t)time(NULL)) > 0) {
		session_reply_error(s, "AUTH", "454 4.7.0 Too many failed authentication attempts, "
				       "try again later");
		return;
	}
	const char *sp = memchr(arg, ' ', len);
	size_t mlen = sp ? (size_t)(sp - arg) : len;
	const char *initial = sp ? sp + 1 : NULL;
	size_t ilen = sp ? len - mlen - 1 : 0;
	if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
		s->auth_step = AUTH_PLAIN_RESPONSE;
	} else if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
		s->auth_step = AUTH_LOGIN_USER;
	} else {
		session_reply_error(s, "AUTH", mlen == 0 ? "501 5.5.4 Syntax: AUTH mechanism"
						 : "504 5.5.4 Unrecognized authentication type");
		return;
	}
	session_set_state(s, S_AUTH);
	if (initial == NULL) {
		session_reply(s, s->auth_step == AUTH_PLAIN_RESPONSE ? "334 " : "334 VXNlcm5hbWU6");
		return;
	}
	if (ilen == 1 && initial[0] == '=') /* an empty initial response */
		ilen = 0;
	session_auth_response(s, initial, ilen);
}
