/*
 * envelope: construction and destruction of envelopes (envelope.h).
 */
#include "queue/envelope.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

void envelope_init(struct envelope *env)
{
	memset(env, 0, sizeof(*env));
}

void envelope_set(char **field, const char *value)
{
	if (value == *field)
		return;
	char *copy = value ? xstrdup(value) : NULL;
	free(*field);
	*field = copy;
}

static void free_rcpts(struct envelope *env)
{
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orig);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].last_error);
		free(env->rcpts[i].report_remote);
	}
	free(env->rcpts);
	env->rcpts = NULL;
	env->nrcpts = env->cap = 0;
}

void envelope_reset(struct envelope *env)
{
	free_rcpts(env);
	envelope_set(&env->sender, NULL);
	envelope_set(&env->envid, NULL);
	envelope_set(&env->auth, NULL);
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
	envelope_set(&env->helo, NULL);
	envelope_set(&env->client_addr, NULL);
	envelope_set(&env->proto, NULL);
}

size_t envelope_add_rcpt(struct envelope *env, const char *addr,
			 const char *orig, const char *orcpt, unsigned notify)
{
	if (env->nrcpts == env->cap) {
		env->cap = env->cap ? env->cap * 2 : 4;
		env->rcpts = xrealloc(env->rcpts, env->cap * sizeof(*env->rcpts));
	}
	struct env_rcpt *r = &env->rcpts[env->nrcpts];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	r->orig = xstrdup(orig ? orig : addr);
	r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
	r->notify = notify;
	return env->nrcpts++;
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
