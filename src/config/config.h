/*
 * config: Fulmar's configuration, loaded from a libconfig file (or the
 * embedded default) and validated against one table of settings.
 *
 * Ownership: config_load_* return a new struct config with one reference;
 * config_ref/config_unref share it (the loop thread only). A reload builds
 * a new struct and swaps it in as current; sessions that hold the old one
 * keep it alive until they end. Nothing in a struct config changes after
 * it is loaded.
 */
#ifndef FULMAR_CONFIG_H
#define FULMAR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/netaddr.h"

/* mx: mail from other servers (25); submission: users' mail, STARTTLS +
 * AUTH (587); submissions: the same over implicit TLS (465, RFC 8314);
 * local: STATE_DIR/sendmail.sock for `fulmar sendmail` (never configured). */
enum listener_role { ROLE_MX = 0, ROLE_SUBMISSION, ROLE_SUBMISSIONS, ROLE_LOCAL };

#define CFG_SNI_MAX 64 /* SNI certificates per listener */

struct cfg_sni {
	char *name;     /* "mail.example.org" or "*.example.org" */
	char *tls_cert;
	char *tls_key;
};

struct cfg_listener {
	char *address;
	int port;
	enum listener_role role;
	char *tls_cert; /* PEM chain, absolute path, or NULL: no TLS */
	char *tls_key;  /* PEM private key */
	struct cfg_sni *sni; /* certificates by server name (SNI) */
	size_t nsni;
	bool auth;      /* AUTH offered (always on submission roles) */
	bool auth_plaintext; /* AUTH allowed before TLS (loopback testing only) */
	int line;
};

/* Who may use which envelope senders once authenticated. */
struct cfg_sender {
	char *user;       /* login name, lower case */
	char **addresses; /* "addr@domain" or "@domain" (any address there) */
	size_t naddresses;
};

struct config_tls {
	char *min_version;  /* "TLSv1.2" (default) or "TLSv1.3" */
	char *ciphers;      /* TLS 1.2 list, or NULL: Fulmar's AEAD-only default */
	char *ciphersuites; /* TLS 1.3 suites, or NULL: OpenSSL's */
};

struct config_auth {
	char *users_file;  /* `fulmar user` file, absolute, or NULL: nobody */
	struct cfg_sender *senders;
	size_t nsenders;
};

struct cfg_mailbox {
	char *address; /* "user@domain", lower case */
	char *maildir; /* absolute path */
};

struct cfg_alias {
	char *address; /* "name@domain", lower case */
	char **targets; /* full addresses, lower case domain */
	size_t ntargets;
};

struct cfg_domain {
	char *name; /* lower case */
	char *catch_all; /* full address or NULL */
};

struct config_limits {
	uint64_t command_line;
	uint64_t text_line;
	uint64_t message_size;
	uint64_t recipients;
	uint64_t errors;
	uint64_t connections;
	uint64_t connections_per_ip;
};

struct config_timeouts {
	double command;
	double data;
	double session;
	double shutdown;
	double tls_handshake;
};

struct config_queue {
	double retry_first;   /* seconds before the first retry */
	double retry_max;     /* cap of the doubling backoff */
	double max_lifetime;  /* then a deferred recipient bounces (4.4.7) */
	double delay_warning; /* a "delayed" DSN after this long; 0 = never */
	uint64_t min_free;    /* octets: below, MAIL gets 452 4.3.1; 0 = off */
	uint64_t prepared_files; /* queue files made ahead; 0 = none */
};

/* TLS on outbound connections. */
enum tls_policy {
	TLS_POLICY_INHERIT = 0, /* routes only: use outbound.tls */
	TLS_POLICY_MAY,         /* STARTTLS when offered (opportunistic) */
	TLS_POLICY_REQUIRED,    /* defer rather than send in clear */
	TLS_POLICY_NONE,        /* never STARTTLS */
};

/* Checks of mail arriving on mx listeners (SPF, DKIM, DMARC). */
struct config_inbound {
	bool checks;
	char *authserv_id;     /* NULL: server.hostname */
	bool dmarc_reject;     /* p=reject failures refused; false: recorded only */
	double timeout;        /* seconds for each of SPF, keys, DMARC policy */
};

struct config_outbound {
	uint64_t port;                 /* of MX and A/AAAA deliveries */
	uint64_t connections;          /* in total */
	uint64_t connections_per_destination;
	uint64_t messages_per_connection;
	uint64_t rate_per_destination; /* messages per minute; 0 = no limit */
	double idle_time;              /* an idle connection waits for reuse */
	char *tls;                     /* text of tls_policy, checked at load */
	enum tls_policy tls_policy;
	bool allow_loopback;           /* MX/A answers at loopback are no loop */
	char *helo_name;               /* NULL: server.hostname */
	double connect_timeout;
	double greeting_timeout;
	double command_timeout;
	double data_timeout;
	double data_done_timeout;
};

/* A DKIM signing key: mail submitted with an envelope sender in domain
 * is signed with it (several keys of one domain: several signatures). */
typedef struct evp_pkey_st EVP_PKEY;
struct cfg_dkim {
	char *domain;    /* lower case: d= */
	char *selector;  /* s= */
	char *key_path;  /* absolute */
	EVP_PKEY *key;   /* loaded with the configuration */
	int alg;         /* enum dkim_alg */
	int line;
};

/* A static route (transport map entry); domain "*" is the default route. */
struct cfg_route {
	char *domain;          /* lower case, or "*" */
	char *host;            /* name or address; NULL: MX routing, limits only */
	int port;              /* 0: outbound.port */
	enum tls_policy tls;
	char *auth_user;       /* AUTH PLAIN credentials, or NULL */
	char *auth_password;
	uint64_t connections;  /* 0: outbound.connections_per_destination */
	int64_t rate;          /* messages per minute; -1: outbound's */
	int line;
};

struct config_dns {
	char *resolvers;      /* "ip:port,..." or NULL: the system's */
	double timeout;
	bool reverse_lookups; /* verified client names in Received: */
};

struct config {
	int refs;
	char *source; /* file name, or "(default)" */
	char *hostname;
	char *user; /* may be NULL */
	char *state_dir; /* absolute */
	char *log_file; /* absolute or NULL */
	int log_level;
	/* server.relay_networks: clients that may relay without AUTH */
	struct netaddr_cidr *relay_networks;
	size_t nrelay_networks;
	struct config_limits limits;
	struct config_timeouts timeouts;
	struct config_dns dns;
	struct config_queue queue;
	struct config_outbound outbound;
	struct config_inbound inbound;
	struct cfg_route *routes;
	size_t nroutes;
	struct cfg_dkim *dkim;
	size_t ndkim;
	struct config_auth auth;
	struct config_tls tls;
	char *recipient_delimiter; /* set of characters, may be "" */
	bool deliver_at_receipt;   /* all-local messages skip the queue files */
	struct cfg_listener *listeners;
	size_t nlisteners;
	struct cfg_domain *domains;
	size_t ndomains;
	struct cfg_mailbox *mailboxes;
	size_t nmailboxes;
	struct cfg_alias *aliases;
	size_t naliases;
};

/* Error list filled by the loaders: each entry "file:line: message". */
struct config_errors {
	char **items;
	size_t count;
};

void config_errors_free(struct config_errors *errs);

/* NULL on error, with every problem found in errs. */
struct config *config_load_file(const char *path, struct config_errors *errs);
struct config *config_load_default(struct config_errors *errs);
/* The listener's TLS context: its certificate and its SNI certificates
 * (lib/tls.h). NULL with err filled when one fails to load. */
typedef struct ssl_ctx_st SSL_CTX;
SSL_CTX *config_listener_tls(const struct config *cfg, const struct cfg_listener *l,
			     char *err, size_t errlen);

/* True for the embedded default (its certificate is made on first start). */
bool config_is_default(const struct config *cfg);
/* The embedded default configuration's text. */
extern const char config_default_text[];

struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Lookups (exact, lower-case input). NULL when absent. */
const struct cfg_domain *config_find_domain(const struct config *cfg,
					    const char *domain);
const struct cfg_mailbox *config_find_mailbox(const struct config *cfg,
					      const char *address);
const struct cfg_alias *config_find_alias(const struct config *cfg,
					  const char *address);
/* The route for a recipient domain: exact match, else "*", else NULL. */
const struct cfg_route *config_find_route(const struct config *cfg, const char *domain);
/* May an authenticated user send as this envelope sender? A user owns its
 * own login name and the addresses auth.senders gives it. */
bool config_sender_owned(const struct config *cfg, const char *user, const char *sender);
/* Is the client's address in server.relay_networks (may it relay without
 * AUTH)? */
bool config_relay_client(const struct config *cfg, const struct sockaddr *sa);

#endif
