/*
 * envelope: construction and destruction of envelopes (envelope.h).
 */
#include "queue/envelope.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

void envelope_init(struct envelope *env)
{
	memset(env, 0, sizeof(*env));
}

/* The two tiers of memory (envelope.h): a session's, fallible, or the
 * queue's and the delivery engine's, fatal. */
static char *copy_str(const char *s, bool fatal)
{
	return fatal ? xstrdup(s) : mem_strdup(s);
}

static int set(char **field, const char *value, bool fatal)
{
	if (value == *field)
		return 0;
	char *copy = NULL;
	if (value != NULL && (copy = copy_str(value, fatal)) == NULL)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

int envelope_set(char **field, const char *value)
{
	return set(field, value, false);
}

void envelope_xset(char **field, const char *value)
{
	set(field, value, true);
}

/* Free a string field (which envelope_set cannot fail to do). */
static void clear(char **field)
{
	free(*field);
	*field = NULL;
}

static void free_rcpt(struct env_rcpt *r)
{
	free(r->addr);
	free(r->orig);
	free(r->orcpt);
	free(r->last_error);
	free(r->report_remote);
}

void envelope_truncate_rcpts(struct envelope *env, size_t n)
{
	while (env->nrcpts > n)
		free_rcpt(&env->rcpts[--env->nrcpts]);
}

static void free_rcpts(struct envelope *env)
{
	envelope_truncate_rcpts(env, 0);
	free(env->rcpts);
	env->rcpts = NULL;
	env->nrcpts = env->cap = 0;
}

void envelope_reset(struct envelope *env)
{
	free_rcpts(env);
	clear(&env->sender);
	clear(&env->envid);
	clear(&env->auth);
	env->smtputf8 = false;
	env->body = 0;
	env->ret = 0;
	env->content_size = 0;
	env->arrival_us = 0;
	env->id[0] = '\0';
}

void envelope_free(struct envelope *env)
{
	envelope_reset(env);
	clear(&env->helo);
	clear(&env->client_addr);
	clear(&env->proto);
}

/* Room for one more recipient. 0 or -1 (ENOMEM). */
static int reserve_rcpt(struct envelope *env, bool fatal)
{
	if (env->nrcpts < env->cap)
		return 0;
	size_t cap = env->cap ? env->cap * 2 : 4;
	size_t size = cap * sizeof(*env->rcpts);
	struct env_rcpt *r = fatal ? xrealloc(env->rcpts, size) : mem_realloc(env->rcpts, size);
	if (r == NULL)
		return -1;
	env->rcpts = r;
	env->cap = cap;
	return 0;
}

static int add_rcpt(struct envelope *env, const char *addr, const char *orig,
		    const char *orcpt, unsigned notify, bool fatal)
{
	if (reserve_rcpt(env, fatal) < 0)
		return -1;
	struct env_rcpt *r = &env->rcpts[env->nrcpts];
	memset(r, 0, sizeof(*r));
	r->notify = notify;
	r->addr = copy_str(addr, fatal);
	r->orig = copy_str(orig ? orig : addr, fatal);
	r->orcpt = orcpt ? copy_str(orcpt, fatal) : NULL;
	if (r->addr == NULL || r->orig == NULL || (orcpt && r->orcpt == NULL)) {
		free_rcpt(r);
		return -1;
	}
	env->nrcpts++;
	return 0;
}

int envelope_add_rcpt(struct envelope *env, const char *addr, const char *orig,
		      const char *orcpt, unsigned notify)
{
	return add_rcpt(env, addr, orig, orcpt, notify, false);
}

void envelope_xadd_rcpt(struct envelope *env, const char *addr, const char *orig,
			const char *orcpt, unsigned notify)
{
	add_rcpt(env, addr, orig, orcpt, notify, true);
}

long envelope_find_rcpt(const struct envelope *env, const char *addr)
{
	for (size_t i = 0; i < env->nrcpts; i++)
		if (strcmp(env->rcpts[i].addr, addr) == 0)
			return (long)i;
	return -1;
}

bool envelope_done(const struct envelope *env)
{
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state != RCPT_DELIVERED &&
		    env->rcpts[i].state != RCPT_FAILED)
			return false;
	return true;
}
