/*
 * config_load: what the configuration loader's parts share (config.c for
 * the scalar table, listeners and domains; config_routes.c for outbound
 * routes). Private to src/config.
 */
#ifndef FULMAR_CONFIG_LOAD_H
#define FULMAR_CONFIG_LOAD_H

#include <libconfig.h>
#include <limits.h>

#include "config/config.h"

struct loader {
	const char *source;
	struct config_errors *errs;
	struct config *cfg;
	char cwd[PATH_MAX];
};

/* Record "file:line: message" for setting s (NULL: the file). */
void cfg_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A string member of a group; NULL when absent (an error if required) or
 * not a string (an error). */
const char *cfg_member_string(struct loader *ld, const config_setting_t *item,
			      const char *name, bool required);
/* Report members of item not in allowed (NULL-ended). */
void cfg_check_members(struct loader *ld, const config_setting_t *item,
		       const char *const *allowed, const char *what);
char *cfg_lower_dup(const char *s);

/* outbound.tls and the routes list (config_routes.c). */
void cfg_load_outbound(struct loader *ld, const config_setting_t *root);
void cfg_free_routes(struct config *cfg);
/* The dkim list (config_dkim.c): keys are loaded and checked here. */
void cfg_load_dkim(struct loader *ld, const config_setting_t *root);
void cfg_free_dkim(struct config *cfg);
char *cfg_absolute_path(struct loader *ld, const char *p, const config_setting_t *s);

#endif
